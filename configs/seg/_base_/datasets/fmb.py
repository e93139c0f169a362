# FMB (Liu et al., SegMiF, ICCV 2023): 1500 RGB-T pairs of 600x800 (1220 train, 280 test), 15 classes
# (unlabeled counted in mIoU), layout {train,test}/{Visible,Infrared,Label}/<name>.png.
# FMB has no validation split: we train on `train` with a fixed schedule and validate/test on `test` without any
# model selection (set `val_every=k` on the datasets to hold out every k-th training image instead).
# The test split has no `bicycle` pixel: RGBTIoUMetric reports mIoU (all 15 classes) and mIoU_present.
dataset_type = "FMBDataset"
data_root = "data/FMB"
crop_size = (600, 800)
train_pipeline = [
    dict(type="LoadRGBTImage"),
    dict(type="LoadAnnotations"),
    dict(type="RandomResize", scale=(800, 600), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadRGBTImage"),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split="train", modality="vis", pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split="test", modality="vis", pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="RGBTIoUMetric")
test_evaluator = val_evaluator
