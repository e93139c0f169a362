"""Every option of TC-MoA training, with the official values (``pipelines/train_fusion.py``, ``fusion.training``).

Config files are Python files defining ``cfg`` (a plain dict) or YAML files. A file may start from another one
with ``_base_ = "defaults.py"`` (a path relative to itself) and set only what differs; unknown keys are errors.
Any value can be changed on the command line: ``tcmoa-train CONFIG train.lr=1e-4 data.tasks.vif.batch_size=2``.
This file is the defaults: ``fusion.training.config.DEFAULTS`` is read from it (there is no other copy).
"""

cfg = dict(
    model=dict(
        name="tcmoa_base",  # tcmoa_tiny | tcmoa_small | tcmoa_base | tcmoa_large (fusion.models.create_model)
        checkpoint=None,  # start from these TC-MoA weights (.pth/.safetensors); None: fresh adapters
        pretrained_backbone=None,  # MAE weights for the frozen backbone: a file, or True for the public URL
        overrides={},  # TCMoAConfig fields, e.g. {"num_tasks": 4} for a new task, {"depth": 4}
        init=None,  # None (official init) | "codec": analytic fuser init for small models trained from scratch
        router_noise=True,  # official noisy top-k gating while training; False routes as at inference
        grad_checkpointing=False,  # recompute backbone blocks in backward: less memory, ~30% slower
        skip_identity_blocks=True,  # frozen blocks with all-zero output projections are exact identities: skip
    ),
    data=dict(
        # One entry per task; a task without datasets is not trained. A dataset is a root folder (layout
        # detected) or dict(root=..., layout=None, split=None, exclude=[names], include=None, repeat=1).
        # Official: vif = LLVIP visible/infrared train; mef = SICE oe/ue; mff = RealMFF + MFI-WHU.
        tasks=dict(
            vif=dict(datasets=[], crop_scale=[0.81, 1.0], batch_size=3),  # batch size per process
            mef=dict(datasets=[], crop_scale=[0.2, 1.0], batch_size=3),
            mff=dict(datasets=[], crop_scale=[0.64, 1.0], batch_size=3),
        ),
        lead_task="vif",  # one epoch = one pass over this task's pairs; the others restart as needed
        crop_size=448,  # RandomResizedCrop output side (a multiple of 112), same crop for both sources
        crop_ratio=[0.75, 1.3333333333333333],  # aspect-ratio range of the crop
        hflip=0.5,  # probability of the (shared) horizontal flip
        interpolation="bicubic",  # bicubic | bilinear | area | nearest (PIL, antialiased when shrinking)
        resize="b_to_a",  # pairs of different sizes: None (error) | b_to_a | a_to_b
        cache=True,  # keep decoded images in memory
        num_workers=2,  # DataLoader worker processes per task
    ),
    train=dict(
        epochs=20,  # schedule length; the cosine reaches min_lr at this epoch
        warmup_epochs=2,  # linear learning-rate warm-up (fractional epochs)
        lr=3e-4,  # peak learning rate (pre-2025 official: 1.5e-4)
        min_lr=1e-5,  # final learning rate (pre-2025 official: 1e-6)
        weight_decay=0.05,  # AdamW decay on >= 2-D trainable weights; 0 on 1-D, biases, alphas, modal shifts
        betas=[0.9, 0.95],  # AdamW betas
        backbone_lr_scale=1.0,  # rate multiplier of backbone parameters when train.unfreeze is set
        step_mode="per_task",  # per_task: one optimiser step per task (official) | sum: one step on the sum
        amp="none",  # none | bf16 | fp16 (fp16 uses a GradScaler; the official run used fp16 on GPUs)
        grad_clip=None,  # max gradient norm, None: no clipping (official)
        unfreeze=False,  # also train the backbone (small variants from scratch); embeddings stay fixed
        freeze=[],  # regular expressions (re.search) of parameter names to keep frozen on top of that
        max_iters=None,  # stop after this many iterations (the schedule still spans `epochs`)
        iters_per_epoch=None,  # None: batches in one pass over lead_task; set to shorten/lengthen epochs
        seed=0,  # process r uses seed + r (official); the model is built from `seed` on every process
        deterministic=False,  # torch deterministic algorithms (exact resumption on CPU)
        device="auto",  # auto | cpu | cuda | cuda:N (torchrun: cuda:LOCAL_RANK)
        threads=None,  # torch CPU threads per process, None: torch's default
    ),
    loss=dict(
        preset="current",  # current (official HEAD weights) | pre2025 | a dict like fusion.losses.LOSS_PRESETS
        warmup_epochs=2,  # epochs (integer) that use the warm-up loss weights
    ),
    ema=dict(
        enabled=False,  # keep an exponential moving average of the trainable weights (a real one)
        decay=0.999,
        export=True,  # write the averaged weights as model_final.safetensors
    ),
    checkpoint=dict(
        every_iters=1000,  # also checkpoint every N iterations (None: only at epoch ends and the end)
        every_epoch=True,  # checkpoint at the end of every epoch
        keep_last=3,  # keep the newest k checkpoints
    ),
    log=dict(
        every_iters=10,  # scalars to metrics.csv / TensorBoard every N iterations (means over them)
        tensorboard=True,
        csv=True,
        progress=True,  # tqdm progress bar (rank 0)
        samples_every_iters=500,  # PNG grid of a / b / fused for each task under samples/ (0: never)
    ),
    output_dir="work_dirs/tcmoa",  # metrics.csv, tensorboard/, samples/, checkpoints/, model_final.safetensors
)
