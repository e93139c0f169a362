# Detection-driven fusion, measured in the README:
#   python pipelines/finetune_e2e.py configs/e2e/tcmoa-tiny_yolov8n_llvip-crossover.py --compare --seeds 0,1,2
# tcmoa_tiny (first shipped weights, the same frozen parts and rates as the segmentation demo) + a YOLOv8n trained from
# scratch through ultralytics' own loss (v8DetectionLoss, per image), on synthetic LLVIP-layout scenes: half of them
# night (pedestrians seen in infrared only), and in the daytime half 75 % of the pedestrians at thermal crossover
# (seen in visible light only), so the detector needs both sources. Full 224x336 frames (multiples of 112), 300
# frozen-fusion warm-up iterations, then 900 frozen vs joint e2e; about 10 minutes per seed on 2 CPU cores.
_base_ = "tcmoa-tiny_fcn-slim_mfnet-synthetic.py"
cfg = {
    # the README's table was measured from the first shipped weights (block-switching codec), kept for it
    "model": {"checkpoint": "tcmoa_tiny_v1"},
    "downstream": "detection",
    "detector": {"model": "yolov8n.yaml"},
    "data": {"root": None, "synthetic": {"n": 200, "height": 224, "width": 336, "seed": 0, "thermal_crossover": 0.75},
             "crop_size": [224, 336], "batch_size": 4, "eval_batch_size": 8},
    "loss": {"lambda_fusion": 0.1, "lambda_seg": 1.0},
    "train": {"iters": 1200, "seg_warmup_iters": 300, "warmup_iters": 30, "lr_fusion": 3e-4, "lr_seg": 2e-3},
    "checkpoint": {"every_iters": 300, "keep_last": 2},
    "output_dir": "runs/e2e_det_llvip",
}
