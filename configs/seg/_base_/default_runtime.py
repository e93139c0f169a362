# Runtime shared by every segmentation config (mmengine style, plain dicts).
default_scope = "mmseg"
# Registers MFNetDataset / FMBDataset, LoadRGBTImage, RGBTIoUMetric and TqdmProgressHook, and prepares mmseg for
# mmcv-lite (downstream/_compat.py).
custom_imports = dict(imports=["downstream.segmentation"], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),  # seg_eval switches to gloo on machines without CUDA
)
vis_backends = [dict(type="LocalVisBackend")]
# No `name`: the Runner then names the visualizer after its experiment, so several runs in one process stay apart.
visualizer = dict(type="SegLocalVisualizer", vis_backends=vis_backends)
log_processor = dict(by_epoch=False)
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
tta_model = None
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=8000, max_keep_ckpts=2, save_last=True),
    sampler_seed=dict(type="DistSamplerSeedHook"),
    visualization=dict(type="SegVisualizationHook"),
)
custom_hooks = [dict(type="TqdmProgressHook")]
