# Every option of end-to-end finetuning (pipelines/finetune_e2e.py) with its default value. Other configs name this
# file (or another) as `_base_` and override keys; an unknown key is an error. This file is the defaults:
# downstream.e2e.config.DEFAULTS is read from it (there is no other copy).
cfg = {
    "model": {
        "name": "tcmoa_tiny",  # TC-MoA variant to finetune
        "checkpoint": None,  # TC-MoA checkpoint to start from (.pth / .safetensors, or shipped weights by name)
        "init": "auto",  # auto: checkpoint, else shipped weights, else codec init | checkpoint | codec | random
        "overrides": {},  # TC-MoA config overrides (free-form), e.g. {"num_tasks": 4}
        "task": "vif",  # fusion task of the pairs (a = visible, b = infrared)
        "router_noise": True,  # training-time noisy gating of the routers (official); False routes as at inference
        "freeze": [],  # fnmatch patterns of TC-MoA parameters kept frozen too, e.g. ["FusionLayer.*.conv1.weight"]
        "skip_identity_blocks": True,  # skip frozen blocks that are exact identities (codec init): same result
    },
    # the task network trained with the fuser: segmentation (an mmseg segmenter, `segmenter` below) or detection
    # (an ultralytics YOLO detector, `detector` below; data.root then holds an LLVIP / M3FD / MSRS layout)
    "downstream": "segmentation",
    "detector": {
        "model": "yolov8n.yaml",  # ultralytics model yaml (random weights) or a local .pt (never downloaded)
        "checkpoint": None,  # detector weights to start from: a safe detector file (det_eval's last.safe.pt)
        "classes": None,  # class names to train on (None: the dataset's classes); other boxes are dropped
        "hyp": {},  # ultralytics loss gains, e.g. {"box": 7.5, "cls": 0.5, "dfl": 1.5} (its defaults otherwise)
        "conf": 0.001,  # evaluation: lowest score kept (low, so that AP and the miss-rate curve see every box)
        "iou": 0.7,  # evaluation: NMS IoU (ultralytics' validation default)
    },
    "segmenter": {
        # mmseg config (model, dataset type, splits): a path, or a shipped config name (configs/seg/...) from any folder
        "config": "configs/seg/fcn_r18-slim_mfnet-synthetic.py",
        "checkpoint": None,  # segmenter weights to start from (mmengine checkpoint or state dict)
        "cfg_options": {},  # mmseg config overrides (free-form, dotted or nested)
        "sync_bn": False,  # convert BatchNorm to SyncBatchNorm under torchrun (the detector's too, for detection)
    },
    "data": {
        "root": None,  # dataset root (the segmenter config's layout); None: synthetic MFNet-layout scenes
        # used when root is None; thermal_crossover: share of daytime pedestrians seen in visible light only
        # (detection: LLVIP-layout scenes, 60 % train / 40 % test)
        "synthetic": {"n": 100, "height": 112, "width": 112, "seed": 0, "thermal_crossover": 0.0},
        "layout": "auto",  # detection datasets: auto | llvip | m3fd | msrs
        "train_split": "train",  # (detection: the dataset's train / test splits)
        "test_split": "test",
        "crop_size": [112, 112],  # [H, W] training crops, multiples of 112 (TC-MoA's input unit)
        "hflip": 0.5,  # probability of the shared horizontal flip
        "batch_size": 4,  # per process
        "num_workers": 0,
        "eval_batch_size": 4,
        "max_test": None,  # evaluate only the first N test pairs
        "frozen_cache": True,  # cache the frozen fuser's outputs per (sample, crop) in frozen iterations
    },
    "loss": {
        "lambda_fusion": 1.0,  # weight of the TC-MoA fusion loss (keeps the fused image a fusion)
        "lambda_seg": 1.0,  # weight of the segmenter's loss
        "fusion_preset": "current",  # fusion.losses preset: current (official HEAD) | pre2025
        "fusion_phase": "main",  # which weights of the preset: main | warmup
    },
    "schedule": {
        "mode": "joint",  # joint (default) | alternating (SeAFusion-style rounds) | frozen (reference pipeline)
        "seg_iters": 10,  # alternating: segmenter-only iterations per round
        "fusion_iters": 10,  # alternating: fuser-only iterations per round
        "lambda_seg_growth": 0.0,  # alternating: lambda_seg *= 1 + growth * completed rounds
    },
    "train": {
        "iters": 1000,  # total iterations (frozen-fusion warm-up included)
        "seg_warmup_iters": 100,  # first iterations train the segmenter on frozen-fusion outputs only
        "warmup_iters": 20,  # linear learning-rate warm-up (of each part), then half-cosine
        "lr_fusion": 1e-4,  # AdamW rate of the TC-MoA adapters, routers and fusion layers
        "lr_seg": 1e-3,  # AdamW rate of the segmenter
        "min_lr_ratio": 0.01,  # final rate / base rate
        "weight_decay_fusion": 0.05,  # on >= 2-D fusion weights (none on biases, alphas, modal shifts)
        "weight_decay_seg": 1e-4,
        "betas": [0.9, 0.999],
        "amp": "none",  # none | bf16 | fp16 (fp16 uses a GradScaler)
        "grad_clip": None,  # max gradient norm over both parts
        "seed": 0,
        "deterministic": False,  # torch deterministic algorithms
        "device": "auto",  # cpu | cuda | cuda:N | auto (torchrun: one GPU per process)
        "threads": None,  # torch CPU threads
    },
    "eval": {
        "profile": "tang",  # fusion-metric profile (fusion.metrics)
        "metrics": ["EN", "SD", "Qabf"],  # fusion metrics reported for the fused test images
        # Allowed relative change of the finetuned fuser's metrics vs the frozen fuser's: t means ±t, [low, high]
        # with None for no limit. EN and SD can rise through noise or contrast stretching, so both sides are bounded;
        # Qabf scores how much of the sources' own edges reach the fused image, so only a drop is a loss.
        "band": {"EN": 0.05, "SD": 0.15, "Qabf": [-0.10, None]},
    },
    "checkpoint": {"every_iters": 500, "keep_last": 2},  # training checkpoints (also written at the end)
    "log": {"every_iters": 10, "tensorboard": False, "csv": True, "progress": True},
    "output_dir": "work_dirs/e2e",
}
