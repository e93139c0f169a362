# SegFormer MiT-B0 (3.7 M parameters) with BN (not SyncBN: runs on CPU and single GPUs) and cross-entropy.
# Larger encoders: set backbone embed_dims / num_layers / num_heads and decode_head in_channels as in mmseg's
# segformer configs -- B1: 64 / [2,2,2,2] / [1,2,5,8] / [64,128,320,512]; B2: 64 / [3,4,6,3]; B3: 64 / [3,4,18,3];
# B4: 64 / [3,8,27,3]; B5: 64 / [3,6,40,3] (B2-B5 also channels=768 in the head).
# ImageNet weights cannot be downloaded here: give a local file with the seg_eval overrides
#   model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg.checkpoint=/path/mit_b0.pth
norm_cfg = dict(type="BN", requires_grad=True)
data_preprocessor = dict(
    type="SegDataPreProcessor",
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=None,  # set by each config to its crop size
)
model = dict(
    type="EncoderDecoder",
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type="MixVisionTransformer",
        in_channels=3,
        embed_dims=32,
        num_stages=4,
        num_layers=[2, 2, 2, 2],
        num_heads=[1, 2, 5, 8],
        patch_sizes=[7, 3, 3, 3],
        sr_ratios=[8, 4, 2, 1],
        out_indices=(0, 1, 2, 3),
        mlp_ratio=4,
        qkv_bias=True,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.1,
    ),
    decode_head=dict(
        type="SegformerHead",
        in_channels=[32, 64, 160, 256],
        in_index=[0, 1, 2, 3],
        channels=256,
        dropout_ratio=0.1,
        num_classes=9,
        norm_cfg=norm_cfg,
        align_corners=False,
        # FocalLoss(use_sigmoid=True) crashes on CPU in mmseg 1.2.2; cross-entropy is the reference loss anyway.
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode="whole"),
)
