"""A literal re-statement of the official TC-MoA forward (docs/tcmoa.md §1), independent of :class:`TCMoA`.

``official_forward`` is written from ``docs/tcmoa.md`` without using ``fusion.models``' modules and follows the
official code's structure step by step: two separate streams, per-block window partition with roll, the explicit
``softmax((q kᵀ)·scale + bias)``, window reverse, the MLP on the flat tokens, the sparse dispatcher with
``nonzero``/``index_add``, the transposed position-embedding resize, both streams through every decoder block, the
decoding of every pixel of stream a. It takes a plain state dict, so it checks the module names as well.

It is the reference of the equivalence tests (``tests/test_model_equivalence.py``) and the "official-style" baseline
of the speed benchmarks (``benchmarks/bench_model.py``, ``benchmarks/gpu_check.py``): :class:`ReferenceTCMoA` puts it
behind the model's call signature so that :func:`fusion.models.fuse_tensors` can drive it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["official_forward", "rel_index", "randomize", "ReferenceTCMoA"]

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def rel_index(ws: int) -> torch.Tensor:
    # index[i, j] = (yi - yj + ws - 1) * (2 ws - 1) + (xi - xj + ws - 1), tokens row-major in the window
    yi, xi = np.divmod(np.arange(ws * ws), ws)
    idx = (yi[:, None] - yi[None, :] + ws - 1) * (2 * ws - 1) + (xi[:, None] - xi[None, :] + ws - 1)
    return torch.from_numpy(idx.astype(np.int64))


def official_forward(sd: dict, cfg: Any, a: torch.Tensor, b: torch.Tensor, task: int):
    """Returns ``(fused [0,1], aux_loss, prompts dict, raw)`` like the official forward (HEAD, with decoder renorm).

    ``a``, ``b``: ImageNet-normalised ``(B, 3, H, W)``; ``cfg``: the model's :class:`TCMoAConfig` (depths, heads).
    """
    ws, shift, p = 14, 7, 16
    rel_idx = rel_index(ws)

    def lin(x, name, bias=True):
        y = x @ sd[name + ".weight"].t()
        return y + sd[name + ".bias"] if bias else y

    def ln(x, name, eps):
        return F.layer_norm(x, (x.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], eps)

    def partition(x, bsz, h, w, c):
        x = x.view(bsz, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).contiguous()
        return x.view(-1, ws * ws, c)

    def reverse(win, bsz, h, w, c):
        x = win.view(bsz, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).contiguous()
        return x.view(bsz, h, w, c)

    def block(x, name, heads, table, shifted, h, w):
        bsz, _, c = x.shape
        x = x.view(bsz, h, w, c)
        if shifted:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        win = partition(x, bsz, h, w, c)
        bias = sd[table][rel_idx.view(-1)].view(ws * ws, ws * ws, -1).permute(2, 0, 1).unsqueeze(0)
        hn = ln(win, name + ".norm1", 1e-6)
        nb, n, _ = hn.shape
        qkv = lin(hn, name + ".attn.qkv").reshape(nb, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (c // heads) ** -0.5
        attn = (attn + bias).softmax(dim=-1)
        out = lin((attn @ v).transpose(1, 2).reshape(nb, n, c), name + ".attn.proj")
        win = win + out
        x = reverse(win, bsz, h, w, c)
        if shifted:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        x = x.reshape(bsz, h * w, c)
        hid = F.gelu(lin(ln(x, name + ".norm2", 1e-6), name + ".mlp.fc1"))
        return x + lin(hid, name + ".mlp.fc2")

    def cv2(v):
        v = v.float()
        return v.var() / (v.mean() ** 2 + 1e-10)

    def mmoe(y, name, task):
        logits = y @ sd[name + ".w_gate"][task]
        top_logits, top_idx = logits.topk(3, dim=1)
        gates = torch.zeros_like(logits).scatter(1, top_idx[:, :2], torch.softmax(top_logits[:, :2], dim=1))
        loss = (cv2(gates.sum(0)) + cv2((gates > 0).sum(0))) * 1e-3
        gates[gates <= 1e-4] = 0
        nz = torch.nonzero(gates)
        sorted_experts, order = nz.sort(0)
        expert_index = sorted_experts[:, 1:2]
        batch_index = nz[order[:, 1], 0]
        sizes = (gates > 0).sum(0).tolist()
        inputs = torch.split(y[batch_index], sizes, dim=0)
        outs = []
        for e in range(4):
            hid = F.relu(lin(inputs[e], f"{name}.experts.{e}.fc1"))
            outs.append(lin(hid, f"{name}.experts.{e}.fc2"))
        nonzero_gates = torch.gather(gates[batch_index], 1, expert_index)
        stitched = torch.cat(outs, 0).exp() * nonzero_gates
        combined = torch.zeros(gates.shape[0], outs[-1].shape[1], device=y.device).index_add(0, batch_index,
                                                                                      stitched.float())
        combined[combined == 0] = np.finfo(float).eps
        return combined.log(), loss

    def adapter(x, t, name, task):
        bsz, n, c = x.shape
        y = ln(torch.cat([x, t], dim=-1), name + ".norm1", 1e-5)
        y = y @ sd[name + ".dimReduction.weight"].t()
        y = ln(y, name + ".norm2", 1e-5).view(bsz * n, c // 4)
        with torch.autocast(y.device.type, enabled=False):  # the official step 2 runs in float32
            z, loss = mmoe(y.float(), name + ".MoA", task)
        z = z.view(bsz, n, c // 4)
        za, zb = torch.chunk(z, 2, dim=-1)
        pa = torch.sigmoid(F.adaptive_avg_pool1d(za, 1))
        pb = torch.sigmoid(F.adaptive_avg_pool1d(zb, 1))
        shifts = sd[name + ".modal_shifts"]
        return pa * x + shifts[2 * task], pb * t + shifts[2 * task + 1], pa, pb, loss

    def conv_fusion(f, name, h, w):
        bsz, n, c = f.shape
        f = f.permute(0, 2, 1).reshape(bsz, c, h, w)
        f = F.conv2d(f, sd[name + ".conv1.weight"])
        f = F.conv2d(f, sd[name + ".conv2.weight"], padding=1)
        f = F.conv2d(f, sd[name + ".conv3.weight"])
        return f.reshape(bsz, c, h * w).permute(0, 2, 1)

    def renorm(new, old):
        mn, sn = new.mean(dim=(1, 2), keepdim=True), new.std(dim=(1, 2), keepdim=True)
        mo, so = old.mean(dim=(1, 2), keepdim=True), old.std(dim=(1, 2), keepdim=True)
        return (new - mn) / (sn + 1e-12) * so + mo

    def pos(name, h, w):
        pe = sd[name][:, 1:, :].view(1, 14, 14, -1).permute(0, 3, 1, 2)
        pe = F.interpolate(pe, size=(w, h), mode="bilinear", align_corners=False)
        return pe.reshape(1, -1, w * h).permute(0, 2, 1)

    def stage(x, t, prefix, depth, heads, tables, moa, fusion, alpha, decoder, h, w):
        pas, pbs, loss = [], [], 0
        for i in range(depth):
            x = block(x, f"{prefix}.{i}", heads, f"{tables}.{i // 2}.relative_position_bias_table", i % 2 == 1, h, w)
            t = block(t, f"{prefix}.{i}", heads, f"{tables}.{i // 2}.relative_position_bias_table", i % 2 == 1, h, w)
            if (i + 2) % 4 == 3:
                k = i // 4
                xm, tm, pa, pb, aux = adapter(x, t, f"{moa}.{k}", task)
                loss = loss + aux
                pas.append(pa)
                pbs.append(pb)
                f = conv_fusion(xm + tm, f"{fusion}.{k}", h, w)
                al = sd[alpha][k]
                xn = f * al + (1 - al) * x
                tn = f * al + (1 - al) * t
                if decoder:
                    xn, tn = renorm(xn, x), renorm(tn, t)
                x, t = xn, tn
        return x, t, pas, pbs, loss

    bsz, _, hh, ww = a.shape
    x = F.interpolate(a, scale_factor=2, mode="bilinear")
    t = F.interpolate(b, scale_factor=2, mode="bilinear")
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=p)
    t = F.conv2d(t, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=p)
    h, w = x.shape[-2:]
    x = x.flatten(2).transpose(1, 2) + pos("pos_embed", h, w)
    t = t.flatten(2).transpose(1, 2) + pos("pos_embed", h, w)
    x, t, pa_e, pb_e, loss_e = stage(x, t, "blocks", cfg.depth, cfg.num_heads, "en_relative_position", "blocks_MoA",
                                     "FusionLayer", "Alpha_encoder", False, h, w)
    x, t = ln(x, "norm", 1e-6), ln(t, "norm", 1e-6)
    x = lin(x, "decoder_embed") + pos("decoder_pos_embed", h, w)
    t = lin(t, "decoder_embed") + pos("decoder_pos_embed", h, w)
    x, t, pa_d, pb_d, loss_d = stage(x, t, "decoder_blocks", cfg.decoder_depth, cfg.decoder_num_heads,
                                     "de_relative_position", "decoder_blocks_MoA", "de_FusionLayer", "Alpha_decoder",
                                     True, h, w)
    x = lin(ln(x, "decoder_norm", 1e-6), "decoder_pred")
    x = x.reshape(bsz, h, w, p, p, 3)
    raw = torch.einsum("nhwpqc->nchpwq", x).reshape(bsz, 3, h * p, w * p)
    pred = F.interpolate(raw, size=(hh, ww))
    fused = torch.clip((pred.float() * STD.to(pred.device) + MEAN.to(pred.device)) * 255, 0, 255) / 255
    prompts = {"enc_a": torch.stack(pa_e), "enc_b": torch.stack(pb_e), "dec_a": torch.stack(pa_d),
               "dec_b": torch.stack(pb_d)}
    return fused, loss_e + loss_d, prompts, raw


def randomize(model, seed: int = 0) -> None:
    """Give every TC-MoA parameter non-trivial values (routers random so that no logits tie, docs/tcmoa.md §6 Q7)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, prm in model.named_parameters():
            if name.endswith(("w_gate", "w_noise")):
                prm.copy_(torch.randn(prm.shape, generator=gen))
            elif name.startswith("Alpha"):
                prm.copy_(torch.rand(prm.shape, generator=gen))
            elif name.endswith("modal_shifts"):
                prm.copy_(torch.randn(prm.shape, generator=gen) * 0.05)
            elif name.endswith("relative_position_bias_table"):
                prm.copy_(torch.randn(prm.shape, generator=gen) * 0.3)
            elif ("norm" in name and name.endswith(("weight", "bias"))) or name.endswith(".bias"):
                prm.add_(torch.randn(prm.shape, generator=gen) * 0.1)


class ReferenceTCMoA(nn.Module):
    """:func:`official_forward` with :class:`TCMoA`'s call signature (``fused = ref(a, b, task)``), on a copy of a
    model's state dict; for :func:`fusion.models.fuse_tensors` (e.g. the official predict strategy with the official
    forward) and the benchmarks. Only the official (transposed) position-embedding layout exists here."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.config = model.config
        self.sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.anchor = nn.Parameter(torch.zeros(1, device=next(model.parameters()).device), requires_grad=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor, task: str | int = 0, return_aux: bool = False,
                pos_embed: str = "official") -> torch.Tensor:
        if return_aux or pos_embed != "official":
            raise ValueError("ReferenceTCMoA: only the fused image with the official position-embedding layout")
        sd = {k: v.to(a.device) for k, v in self.sd.items()}
        return official_forward(sd, self.config, a, b, self.config.task_index(task))[0]
