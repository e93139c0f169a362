# FCN / dilated ResNet-18 on MFNet (9 classes), 480x640 crops, 80k iterations, batch 8 (a GPU schedule).
_base_ = [
    "./_base_/models/fcn_r18-d8.py",
    "./_base_/datasets/mfnet.py",
    "./_base_/default_runtime.py",
    "./_base_/schedules/sgd_poly_80k.py",
]
crop_size = (480, 640)
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=9),
    auxiliary_head=dict(num_classes=9),
)
