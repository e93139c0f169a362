# SegFormer MiT-B0 on MFNet (9 classes), 480x640 crops, 80k iterations, batch 8 (a GPU schedule).
# Which image the model sees: the overrides {train,val,test}_dataloader.dataset.modality=ir (or vis / fused with
# fused_dir=... or fuser=...); pipelines/seg_eval.py sets this for you for every compared input.
_base_ = [
    "./_base_/models/segformer_mit-b0.py",
    "./_base_/datasets/mfnet.py",
    "./_base_/default_runtime.py",
    "./_base_/schedules/adamw_poly_80k.py",
]
crop_size = (480, 640)
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=9),
)
