"""Official recipe (docs/tcmoa.md §4): Base backbone from MAE, frozen; LLVIP / SICE / RealMFF + MFI-WHU; 448 crops.

Run on 3 GPUs as the authors (batch 3 per task per GPU):
    torchrun --nproc_per_node 3 pipelines/train_fusion.py configs/fusion/tcmoa_base.py \
        model.pretrained_backbone=/path/mae_visualize_vit_base.pth train.amp=fp16
Dataset roots below are placeholders: point them at your copies (layouts are detected).
"""

_base_ = "defaults.py"

cfg = dict(
    model=dict(name="tcmoa_base"),
    data=dict(
        tasks=dict(
            vif=dict(datasets=[dict(root="data/LLVIP", layout="llvip", split="train")]),
            mef=dict(datasets=[dict(root="data/SICE", layout="sice")]),
            mff=dict(datasets=[dict(root="data/RealMFF", layout="realmff"),
                               dict(root="data/MFI-WHU", layout="mfi_whu")]),
        ),
    ),
    output_dir="work_dirs/tcmoa_base",
)
