"""Any-size inference: padding, official resizing, tiles (official overwrite and feathered), batching, uint8 API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fusion.data.postprocess import official_bytescale as bytescale
from fusion.errors import ConfigError, InputError
from fusion.models import TCMoAConfig, create_model, fuse_arrays, fuse_tensors
from fusion.models.inference import official_tile_starts, overlap_tile_starts

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class Recorder(torch.nn.Module):
    """Stands in for TC-MoA: returns source a de-normalised (an identity on [0,1]) plus 0.1·b's red channel,
    and records the input shapes of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.config = TCMoAConfig(name="tcmoa_tiny", embed_dim=192, num_heads=3, decoder_embed_dim=128,
                                  decoder_num_heads=4)
        self.calls: list[tuple[int, ...]] = []
        self.layouts: list[str] = []
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, a, b, task=0, return_aux=False, pos_embed="official"):
        assert not self.training
        assert a.shape[-1] % 112 == 0 and a.shape[-2] % 112 == 0
        self.calls.append(tuple(a.shape))
        self.layouts.append(pos_embed)
        return a * STD + MEAN + 0.0 * b


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = create_model("tcmoa_tiny", depth=4, decoder_depth=4, frame_margin=0)
    with torch.no_grad():
        for mod in model.modules():
            if hasattr(mod, "w_gate"):
                mod.w_gate.normal_()
    return model.eval()


def test_tile_starts():
    assert official_tile_starts(900, 448) == [0, 448, 452]
    assert official_tile_starts(896, 448) == [0, 448]
    assert official_tile_starts(449, 448) == [0, 1]
    assert overlap_tile_starts(448, 448, 112) == [0]
    assert overlap_tile_starts(1000, 448, 112) == [0, 336, 552]
    assert overlap_tile_starts(500, 448, 112) == [0, 52]


@pytest.mark.parametrize("size", [(37, 61), (112, 112), (130, 250), (250, 130), (300, 465)])
@pytest.mark.parametrize("compat", ["default", "official"])
def test_identity_model_is_reproduced_through_padding_and_tiles(size, compat):
    rec = Recorder()
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, *size, generator=gen)
    b = torch.rand(2, 3, *size, generator=gen)
    budget = 3 * 224 * 224
    out = fuse_tensors(rec, a, b, "vif", compat=compat, tile=224, overlap=48, batch_size=3, max_pixels=budget)
    assert out.shape == a.shape and out.dtype == torch.float32
    if compat == "default" or (size[0] > 224 and size[1] > 224) or size == (112, 112):
        # padding/cropping and tiles/blending are exact: nothing is resampled
        assert torch.allclose(out, a, atol=1e-6)
    else:
        assert (out - a).abs().max() > 1e-3  # resampled up and down (official small-image path)
    assert all(c[0] <= 3 for c in rec.calls)
    if compat == "default":  # memory bound by max_pixels per call (the official path resizes whole images)
        assert all(c[0] * c[-2] * c[-1] <= budget for c in rec.calls)
    if size == (300, 465) and compat == "default":  # 336x560 padded exceeds the budget: 224 tiles
        assert all(c[-2:] == (224, 224) for c in rec.calls) and set(rec.layouts) == {"official"}


def test_default_frames_run_whole_padded_to_multiples_of_112():
    rec = Recorder()
    fuse_tensors(rec, torch.rand(1, 3, 100, 150), torch.rand(1, 3, 100, 150))
    assert rec.calls == [(1, 3, 112, 224)] and rec.layouts == ["aspect"]  # not a 224x224 square
    rec.calls.clear()
    fuse_tensors(rec, torch.rand(3, 3, 480, 640), torch.rand(3, 3, 480, 640))
    assert rec.calls == [(3, 3, 560, 672)]  # one call: 5,880 tokens per stream and frame, not four 448 tiles
    rec.calls.clear()
    fuse_tensors(rec, torch.rand(3, 3, 480, 640), torch.rand(3, 3, 480, 640), max_pixels=2 * 560 * 672)
    assert rec.calls == [(2, 3, 560, 672), (1, 3, 560, 672)]  # frames per call bounded by the pixel budget
    rec.calls.clear()
    fuse_tensors(rec, torch.rand(1, 3, 100, 150), torch.rand(1, 3, 100, 150), compat="official")
    assert rec.calls == [(1, 3, 112, 224)] and rec.layouts[-1] == "official"


def test_auto_tile_fits_the_budget():
    from fusion.models.inference import DEFAULT_MAX_PIXELS, auto_tile

    assert auto_tile(DEFAULT_MAX_PIXELS, 112) == 1568 and 1568**2 <= DEFAULT_MAX_PIXELS
    assert auto_tile(448 * 448, 112) == 448 and auto_tile(100, 112) == 112
    rec = Recorder()
    fuse_tensors(rec, torch.rand(1, 3, 500, 700), torch.rand(1, 3, 500, 700), max_pixels=448 * 448)
    assert set(rec.calls) == {(1, 3, 448, 448)}
    with pytest.raises(ConfigError, match="max_pixels"):
        fuse_tensors(rec, torch.rand(1, 3, 50, 50), torch.rand(1, 3, 50, 50), max_pixels=1000)


def test_official_tiles_overwrite_in_order():
    class Constant(Recorder):
        """Each call returns a constant image holding its call number."""

        def forward(self, a, b, task=0, return_aux=False, pos_embed="official"):
            self.calls.append(tuple(a.shape))
            n = len(self.calls)
            return torch.full_like(a, float(n)) + torch.arange(a.shape[0]).view(-1, 1, 1, 1) * 0.1

    rec = Constant()
    out = fuse_tensors(rec, torch.rand(1, 3, 250, 300), torch.rand(1, 3, 250, 300), compat="official", tile=224,
                       batch_size=1)
    # rows start at 0, 26; columns at 0, 76; tiles row-major, later ones win
    assert len(rec.calls) == 4
    assert out[0, 0, 0, 0] == 1 and out[0, 0, 0, 299] == 2 and out[0, 0, 249, 0] == 3 and out[0, 0, 249, 299] == 4
    assert out[0, 0, 100, 100] == 4  # the overlap of all four tiles belongs to the last one


def test_official_small_image_path_equals_manual_resizing(tiny):
    gen = torch.Generator().manual_seed(1)
    a, b = torch.rand(1, 3, 100, 150, generator=gen), torch.rand(1, 3, 100, 150, generator=gen)
    got = fuse_tensors(tiny, a, b, "mef", compat="official")
    na, nb = (a - MEAN) / STD, (b - MEAN) / STD
    up = dict(size=(112, 224), mode="bilinear", align_corners=False, antialias=False)
    with torch.no_grad():
        want = tiny(F.interpolate(na, **up), F.interpolate(nb, **up), 1)
    want = F.interpolate(want, size=(100, 150), mode="bilinear", align_corners=False, antialias=False)
    assert torch.allclose(got, want, atol=1e-6)


def test_frame_margin_pads_every_side_then_crops(tiny):
    import copy

    model = copy.deepcopy(tiny)
    model.config = model.config.replace(frame_margin=16)
    gen = torch.Generator().manual_seed(3)
    a, b = torch.rand(1, 3, 100, 150, generator=gen), torch.rand(1, 3, 100, 150, generator=gen)
    got = fuse_tensors(model, a, b, 0)
    # 16 reflected pixels on every side (132 x 182), then the usual bottom/right padding to 224 x 224
    na = F.pad(F.pad((a - MEAN) / STD, (16, 16, 16, 16), mode="reflect"), (0, 42, 0, 92), mode="reflect")
    nb = F.pad(F.pad((b - MEAN) / STD, (16, 16, 16, 16), mode="reflect"), (0, 42, 0, 92), mode="reflect")
    with torch.no_grad():
        want = model(na, nb, 0, pos_embed="aspect")[..., 16:116, 16:166]
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, fuse_tensors(tiny, a, b, 0), atol=1e-3)  # the margin changes the result
    # tiny frames (a side <= the margin) are replicated instead of reflected
    small = fuse_tensors(model, a[..., :10, :30], b[..., :10, :30], 0)
    assert small.shape == (1, 3, 10, 30) and bool(torch.isfinite(small).all())
    # the official strategy never pads a margin
    assert torch.equal(fuse_tensors(model, a, b, 0, compat="official"), fuse_tensors(tiny, a, b, 0, compat="official"))
    with pytest.raises(ConfigError, match="overlap above 2 x frame_margin"):
        fuse_tensors(model, a, b, 0, max_pixels=112 * 112, overlap=32)


def test_shipped_tiny_tiles_without_seams():
    """The shipped tiny (frame_margin 16): tiles whose outer 16 pixels get no weight give the whole-frame result."""
    from fusion.fusers import create_fuser

    model = create_fuser("tcmoa_tiny").model
    gen = torch.Generator().manual_seed(4)
    smooth = F.interpolate(torch.rand(1, 4, 25, 33, generator=gen), size=(200, 260), mode="bilinear")
    a, b = smooth[:, :3], smooth[:, 3:].expand(1, 3, 200, 260).contiguous()
    whole = fuse_tensors(model, a, b, "vif")
    for overlap in (112, 48):
        tiled = fuse_tensors(model, a, b, "vif", max_pixels=224 * 224, overlap=overlap)
        assert (tiled - whole).abs().max() < 1.0 / 255


def test_default_small_image_equals_manual_padding(tiny):
    gen = torch.Generator().manual_seed(2)
    a, b = torch.rand(1, 3, 100, 150, generator=gen), torch.rand(1, 3, 100, 150, generator=gen)
    got = fuse_tensors(tiny, a, b, 2)
    na = F.pad((a - MEAN) / STD, (0, 74, 0, 12), mode="reflect")
    nb = F.pad((b - MEAN) / STD, (0, 74, 0, 12), mode="reflect")
    with torch.no_grad():
        want = tiny(na, nb, 2, pos_embed="aspect")[..., :100, :150]
    assert torch.allclose(got, want, atol=1e-6)
    # more than one reflection when the padding exceeds the image: 37 -> 112 rows
    a, b = torch.rand(1, 3, 37, 112, generator=gen), torch.rand(1, 3, 37, 112, generator=gen)
    na = F.pad(F.pad((a - MEAN) / STD, (0, 0, 0, 36), mode="reflect"), (0, 0, 0, 39), mode="reflect")
    nb = F.pad(F.pad((b - MEAN) / STD, (0, 0, 0, 36), mode="reflect"), (0, 0, 0, 39), mode="reflect")
    with torch.no_grad():
        want = tiny(na, nb, 2, pos_embed="aspect")[..., :37, :]
    assert torch.allclose(fuse_tensors(tiny, a, b, 2), want, atol=1e-6)


@pytest.mark.parametrize("max_pixels", [None, 112 * 112])
def test_batches_and_chunks_do_not_change_results(tiny, max_pixels):
    gen = torch.Generator().manual_seed(3)
    a, b = torch.rand(2, 3, 120, 130, generator=gen), torch.rand(2, 3, 120, 130, generator=gen)
    kw = {"tile": 112, "overlap": 32, **({"max_pixels": max_pixels} if max_pixels else {})}
    one = fuse_tensors(tiny, a, b, 0, batch_size=1, **kw)
    many = fuse_tensors(tiny, a, b, 0, batch_size=8, **kw)
    assert torch.allclose(one, many, atol=1e-5)
    single = fuse_tensors(tiny, a[1:2], b[1:2], 0, **kw)
    assert torch.allclose(single, one[1:2], atol=1e-5)
    assert 0 <= one.min() and one.max() <= 1


def test_amp_bf16_runs_close_to_fp32(tiny):
    gen = torch.Generator().manual_seed(4)
    a, b = torch.rand(1, 3, 112, 112, generator=gen), torch.rand(1, 3, 112, 112, generator=gen)
    exact = fuse_tensors(tiny, a, b, 0)
    fast = fuse_tensors(tiny, a, b, 0, amp_dtype="bf16")
    assert fast.dtype == torch.float32
    assert (exact - fast).abs().mean() < 0.02


def test_mode_is_restored_and_errors():
    rec = Recorder()
    rec.train()
    rec.forward = lambda a, b, task=0, return_aux=False, pos_embed="official": a * STD + MEAN  # no eval check
    fuse_tensors(rec, torch.rand(1, 3, 50, 50), torch.rand(1, 3, 50, 50))
    assert rec.training
    rec = Recorder()
    with pytest.raises(InputError, match="differ in size"):
        fuse_tensors(rec, torch.rand(1, 3, 50, 50), torch.rand(1, 3, 50, 60))
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        fuse_tensors(rec, torch.rand(3, 50, 50), torch.rand(3, 50, 50))
    with pytest.raises(ConfigError, match="tile"):
        fuse_tensors(rec, torch.rand(1, 3, 50, 50), torch.rand(1, 3, 50, 50), tile=400)
    with pytest.raises(ConfigError, match="compat"):
        fuse_tensors(rec, torch.rand(1, 3, 50, 50), torch.rand(1, 3, 50, 50), compat="fast")
    with pytest.raises(ConfigError, match="amp_dtype"):
        fuse_tensors(rec, torch.rand(1, 3, 50, 50), torch.rand(1, 3, 50, 50), amp_dtype="int8")
    with pytest.raises(InputError, match="unknown task"):
        fuse_tensors(rec, torch.rand(1, 3, 50, 50), torch.rand(1, 3, 50, 50), task="fmf")


def test_bytescale_is_the_official_min_max_stretch():
    img = np.array([[[0.25, 0.5, 0.75]]], dtype=np.float32)
    assert bytescale(img).tolist() == [[[0, 128, 255]]]
    assert bytescale(np.full((2, 2, 3), 0.4, dtype=np.float32)).max() == 0  # constant: range treated as 1


def test_fuse_arrays_uint8(tiny):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 70, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (40, 70, 3), dtype=np.uint8)
    out = fuse_arrays(tiny, a, b, "vif")
    assert out.shape == a.shape and out.dtype == np.uint8
    ref = fuse_tensors(tiny, torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255,
                       torch.from_numpy(b).permute(2, 0, 1)[None].float() / 255, "vif")
    assert np.array_equal(out, np.rint(ref[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    batch = fuse_arrays(tiny, np.stack([a, a]), np.stack([b, b]), "vif")
    assert batch.shape == (2, 40, 70, 3) and np.array_equal(batch[1], out)
    official = fuse_arrays(tiny, a, b, "vif", compat="official")
    assert official.min() == 0 and official.max() == 255  # stretched like the official imsave
    with pytest.raises(InputError):
        fuse_arrays(tiny, a, b[:30])
    with pytest.raises(InputError):
        fuse_arrays(tiny, a.astype(np.float32), b)


@pytest.mark.shared_data
def test_bf16_moves_ssim_and_qabf_within_half_a_percent_on_real_pairs(shared_data):
    """The reduced-precision band stated in the README: bf16 autocast against float32, on real VIFB/TNO pairs, with a
    model that computes every block (random weights: the shipped codec refuses reduced precision)."""
    from fusion.fusers.base import create_fuser
    from fusion.metrics import evaluate
    from fusion.models.reference import randomize
    from fusion.utils.io import read_image

    torch.manual_seed(0)
    model = create_model("tcmoa_tiny").eval()
    randomize(model, seed=0)
    exact = create_fuser("tcmoa_tiny", device="cpu", model=model)
    fast = create_fuser("tcmoa_tiny", device="cpu", model=model, amp_dtype="bf16")
    for name in ("vifb/vis/carLight.jpg", "tno/vis/" + sorted(p.name for p in (shared_data / "tno/vis").iterdir())[0]):
        vis = read_image(shared_data / name)
        ir = read_image(shared_data / name.replace("/vis/", "/ir/"))
        f32, f16 = exact.fuse(vis, ir, "vif"), fast.fuse(vis, ir, "vif")
        assert np.abs(f32.astype(int) - f16.astype(int)).max() <= 3
        s32 = evaluate(f32, ir, vis, profile="vifb", metrics=["SSIM", "Qabf"])
        s16 = evaluate(f16, ir, vis, profile="vifb", metrics=["SSIM", "Qabf"])
        for key in ("SSIM", "Qabf"):
            assert abs(s16[key] / s32[key] - 1) <= 0.005, (name, key, s32[key], s16[key])


def test_codec_backbone_refuses_reduced_precision():
    from fusion.fusers.base import create_fuser

    with pytest.raises(ConfigError, match="codec backbone.*float32"):
        create_fuser("tcmoa_tiny", device="cpu", amp_dtype="bf16")
