"""Training recipe of ``tcmoa_tiny`` on a CPU: the analytic codec start, its mef and mff routers trained on the real
samples in ../shared/data. The shipped ``fusion/weights/tcmoa_tiny.safetensors`` is the untrained start (training
made the held-out rankings worse, see its model card); this recipe adapts the mef/mff routers to other data.

No MAE exists at tiny width and a ViT trained from scratch on ~55 pairs in minutes only blurs, so the model starts
from the analytic codec initialisation (``model.init="codec"``, fusion/training/codec_init.py): a frozen backbone
that carries 8x8-block codes and TC-MoA modules that already fuse (a prompted smooth base, both sources' details;
the vif router lets the brighter block win, with a head start for the visible image). The vif router stays as
initialised: training it with the official losses made the held-out ranking worse (docs in the model card). What
is trained is what TC-MoA makes task-specific, the mef and mff routers and their experts (experts 2-3; vif is routed
to experts 0-1, which are frozen, so vif output is bit-identical before and after), with the official losses. The
fusion convolutions, alphas, modal shifts and the routers' shared front end stay frozen. Held-back pairs (excluded
below) are never trained on; they evaluate the model.

    python pipelines/train_fusion.py --config configs/fusion/tcmoa_tiny_cpu.py
"""

import os

_base_ = "defaults.py"

DATA = os.environ.get("TCMOA_SHARED_DATA", "../shared/data")

# the evaluation pairs of the model card (benchmarks/eval_heldback.py): never trained on. The vif router is not
# trained at all here; its pairs are listed for the card (and for a run that adds vif data)
HOLDOUT = {
    "llvip": ["190001", "200002"],
    "msrs": ["00004N", "00537D", "01486D"],
    "roadscene": ["FLIR_00006", "FLIR_05914", "FLIR_09545"],
    "mef_mefb": ["Arno", "Lighthouse"],
    "mff_lytro": ["lytro_01", "lytro_07", "lytro_13"],
}

cfg = dict(
    model=dict(name="tcmoa_tiny", init="codec"),
    data=dict(
        tasks=dict(
            mef=dict(datasets=[dict(root=f"{DATA}/mef_mefb", layout="mefb", exclude=HOLDOUT["mef_mefb"])],
                     crop_scale=[0.05, 0.6], batch_size=2),
            mff=dict(datasets=[dict(root=f"{DATA}/mff_lytro", layout="mfifb", exclude=HOLDOUT["mff_lytro"])],
                     crop_scale=[0.1, 0.6], batch_size=2),
        ),
        lead_task="mef",
        crop_size=112,
        num_workers=0,
    ),
    # only the mef/mff experts and the routers' gates learn; everything vif reads stays as initialised
    train=dict(epochs=50, warmup_epochs=2, lr=3e-4, min_lr=3e-5, device="cpu", threads=2, seed=0,
               freeze=[r"FusionLayer\.", r"modal_shifts", r"dimReduction", r"MoA\.\d+\.norm[12]\.", r"Alpha_",
                       r"MoA\.experts\.[01]\."]),
    loss=dict(preset="current", warmup_epochs=0),
    ema=dict(enabled=True, decay=0.98, export=True),
    checkpoint=dict(every_iters=50, keep_last=2),
    log=dict(every_iters=10, samples_every_iters=100),
    output_dir="work_dirs/tcmoa_tiny_cpu",
)
