"""Official recipe (docs/tcmoa.md §4) with the Large backbone: the Base recipe's data and schedule, only the model
differs.

Run on 3 GPUs as the authors (batch 3 per task per GPU):
    torchrun --nproc_per_node 3 pipelines/train_fusion.py configs/fusion/tcmoa_large.py \
        model.pretrained_backbone=/path/mae_visualize_vit_large_ganloss.pth train.amp=fp16
"""

_base_ = "tcmoa_base.py"

cfg = dict(
    model=dict(name="tcmoa_large"),
    output_dir="work_dirs/tcmoa_large",
)
