# SegFormer MiT-B0 on FMB (15 classes), 600x800 crops, 80k iterations, batch 8 (a GPU schedule).
# FMB has no validation split: validation runs on `test` and selects nothing (see _base_/datasets/fmb.py).
_base_ = [
    "./_base_/models/segformer_mit-b0.py",
    "./_base_/datasets/fmb.py",
    "./_base_/default_runtime.py",
    "./_base_/schedules/adamw_poly_80k.py",
]
crop_size = (600, 800)
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=15),
)
