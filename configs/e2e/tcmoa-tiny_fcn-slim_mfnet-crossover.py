# The measured comparison of the README:
#   python pipelines/finetune_e2e.py configs/e2e/tcmoa-tiny_fcn-slim_mfnet-crossover.py --compare
# The CPU demo's networks and rates, on 400 synthetic MFNet-layout scenes where every daytime pedestrian is at thermal
# crossover (seen in visible light only), trained long enough (1200 iterations, 200 of them the shared frozen-fusion
# warm-up) for the slim segmenter to start learning the small visible-only classes (car stops, colour cones, bumps):
# those are where the finetuned fuser makes the difference. About 8 minutes on an idle 2-core CPU.
_base_ = "tcmoa-tiny_fcn-slim_mfnet-synthetic.py"
cfg = {
    # the README's table was measured from the first shipped weights (block-switching codec), kept for it
    "model": {"checkpoint": "tcmoa_tiny_v1"},
    "data": {"synthetic": {"n": 400, "thermal_crossover": 1.0}},
    "train": {"iters": 1200, "seg_warmup_iters": 200},
    "output_dir": "runs/e2e_crossover",
}
