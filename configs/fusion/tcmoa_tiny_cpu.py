"""The shipped ``fusion/weights/tcmoa_tiny.safetensors``: tcmoa_tiny on the real samples in ../shared/data, on a CPU.

No MAE exists at tiny width and a ViT trained from scratch on ~55 pairs in minutes only blurs, so the model starts
from the analytic codec initialisation (``model.init="codec"``, fusion/training/codec_init.py): a frozen backbone that
carries 8x8-block codes, TC-MoA modules that already fuse (weighted base + both sources' details; the vif router
prefers the brighter block). Training with the official losses (current preset) then tunes what TC-MoA trains:
routers, experts (prompts), fusion convolutions, alphas, modal shifts. The loss warm-up phase is skipped (its
average-fusion targets would undo the start); crops are small regions at nearly native scale (inference runs on
native-resolution 448 tiles). Held-back pairs (excluded below) are never trained on; they evaluate the model.

    python pipelines/train_fusion.py --config configs/fusion/tcmoa_tiny_cpu.py
"""

import os

_base_ = "defaults.py"

DATA = os.environ.get("TCMOA_SHARED_DATA", "../shared/data")

# held back for evaluation (model card): llvip's two official test pairs, m3fd's only pair, 2-3 of every other set
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
            vif=dict(
                datasets=[
                    dict(root=f"{DATA}/llvip", exclude=HOLDOUT["llvip"]),
                    dict(root=f"{DATA}/msrs", exclude=HOLDOUT["msrs"]),
                    dict(root=f"{DATA}/roadscene", exclude=HOLDOUT["roadscene"]),
                ],
                crop_scale=[0.03, 0.5],
                batch_size=4,
            ),
            mef=dict(datasets=[dict(root=f"{DATA}/mef_mefb", layout="mefb", exclude=HOLDOUT["mef_mefb"])],
                     crop_scale=[0.05, 0.6], batch_size=2),
            mff=dict(datasets=[dict(root=f"{DATA}/mff_lytro", layout="mfifb", exclude=HOLDOUT["mff_lytro"])],
                     crop_scale=[0.1, 0.6], batch_size=2),
        ),
        crop_size=112,
        num_workers=0,
    ),
    # FusionLayer conv1 reads raw tokens, whose codec constant direction (~3000) it must keep ignoring: frozen
    train=dict(epochs=5, warmup_epochs=0.5, lr=3e-4, min_lr=3e-5, device="cpu", threads=2, seed=0,
               freeze=[r"FusionLayer\.\d+\.conv1\."]),
    loss=dict(preset="current", warmup_epochs=0),
    ema=dict(enabled=True, decay=0.98, export=True),
    checkpoint=dict(every_iters=10, keep_last=2),
    log=dict(every_iters=3, samples_every_iters=30),
    output_dir="work_dirs/tcmoa_tiny_cpu",
)
