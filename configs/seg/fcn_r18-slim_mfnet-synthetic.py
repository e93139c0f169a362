# The CPU demo of `python pipelines/seg_eval.py`: a slim FCN / dilated ResNet-18 (16 base channels, 0.7 M
# parameters) trained from scratch on the synthetic MFNet-layout scenes (84x112, MFNet's 3:4) for 600 iterations of
# batch 4 (about a minute of one CPU core per input). Same model family and code path as fcn_r18-d8_mfnet.py, only
# narrower and shorter.
_base_ = [
    "./_base_/models/fcn_r18-d8.py",
    "./_base_/datasets/mfnet.py",
    "./_base_/default_runtime.py",
]
crop_size = (84, 112)
data_root = "runs/seg_eval/data/mfnet_synthetic"
norm_cfg = dict(type="BN", requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(stem_channels=16, base_channels=16),
    decode_head=dict(
        in_channels=128, channels=64, num_convs=1, concat_input=False, num_classes=9,
        # Thin, rare classes (lane marks, cones, car stops: 0.1-1.5 % of the pixels against 86 % unlabeled) are
        # never learnt in a few hundred steps with plain cross-entropy. Weights = sqrt of ENet's 1 / ln(1.02 + f)
        # on the synthetic class frequencies f, normalised to unlabeled = 1.
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True,
                         class_weight=[1.0, 2.8, 3.3, 5.5, 4.8, 5.3, 4.5, 5.5, 4.3]),
    ),
    auxiliary_head=None,
)
train_pipeline = [
    dict(type="LoadRGBTImage"),
    dict(type="LoadAnnotations"),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadRGBTImage"),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline),
)
val_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                       dataset=dict(data_root=data_root, pipeline=test_pipeline))
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=2e-3, weight_decay=1e-4))
param_scheduler = [dict(type="PolyLR", eta_min=1e-5, power=0.9, begin=0, end=600, by_epoch=False)]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=600, val_interval=600)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=600, max_keep_ckpts=1),
)
