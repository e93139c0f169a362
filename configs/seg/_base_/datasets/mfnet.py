# MFNet (Ha et al., IROS 2017): 1569 RGB-T frames of 480x640, 9 classes (unlabeled counted in mIoU),
# original layout: images/<name>.png (R, G, B, thermal), labels/<name>.png, train.txt / val.txt / test.txt.
# `modality` picks what the network sees: "vis", "ir" or "fused" (+ fused_dir=... or fuser="average").
dataset_type = "MFNetDataset"
data_root = "data/MFNet"
crop_size = (480, 640)
train_pipeline = [
    dict(type="LoadRGBTImage"),
    dict(type="LoadAnnotations"),
    dict(type="RandomResize", scale=(640, 480), ratio_range=(0.5, 2.0), keep_ratio=True),
    # no cat_max_ratio: `unlabeled` covers most of every MFNet frame, so the check would only waste retries
    dict(type="RandomCrop", crop_size=crop_size),
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
    dataset=dict(type=dataset_type, data_root=data_root, split="val", modality="vis", pipeline=test_pipeline),
)
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split="test", modality="vis", pipeline=test_pipeline),
)
val_evaluator = dict(type="RGBTIoUMetric")
test_evaluator = val_evaluator
