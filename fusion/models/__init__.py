"""TC-MoA models: variants, the network, checkpoints and any-size inference.

>>> import fusion
>>> model = fusion.create_model("tcmoa_base", checkpoint="tcmoa_base.pth").eval()
>>> fused = model(a, b, task="vif")                       # ImageNet-normalised (B, 3, H, W), H, W % 112 == 0
>>> fused = fusion.models.fuse_tensors(model, a01, b01, "vif")   # [0, 1] RGB of any size
"""

from fusion.models.checkpoint import (
    LoadReport,
    clean_state_dict,
    download_mae_weights,
    load_checkpoint,
    load_pretrained_backbone,
    read_checkpoint,
    read_state_dict,
    rename_legacy_keys,
    save_checkpoint,
)
from fusion.models.config import (
    MAE_URLS,
    TCMoABaseConfig,
    TCMoAConfig,
    TCMoALargeConfig,
    TCMoASmallConfig,
    TCMoATinyConfig,
)
from fusion.models.inference import fuse_arrays, fuse_tensors, resolve_amp_dtype
from fusion.models.registry import create_model, get_config, list_models, register_model
from fusion.models.tcmoa import (
    BACKBONE_PREFIXES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TCMoA,
    denormalize,
    is_backbone_key,
    is_constant_buffer_key,
    normalize,
    prompt_loss,
)

__all__ = [
    "BACKBONE_PREFIXES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAE_URLS",
    "LoadReport",
    "TCMoA",
    "TCMoAConfig",
    "TCMoABaseConfig",
    "TCMoALargeConfig",
    "TCMoASmallConfig",
    "TCMoATinyConfig",
    "clean_state_dict",
    "create_model",
    "denormalize",
    "download_mae_weights",
    "fuse_arrays",
    "fuse_tensors",
    "get_config",
    "is_backbone_key",
    "is_constant_buffer_key",
    "list_models",
    "load_checkpoint",
    "load_pretrained_backbone",
    "normalize",
    "prompt_loss",
    "read_checkpoint",
    "read_state_dict",
    "register_model",
    "rename_legacy_keys",
    "resolve_amp_dtype",
    "save_checkpoint",
]
