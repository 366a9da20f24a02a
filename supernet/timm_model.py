"""Searched subnets as timm models: importing this module registers ``nas_efficientformer`` in timm's registry.

The arch travels as keyword arguments (``EfficientFormerNet.arch_config``), so any subnet is one call away::

    import supernet.timm_model  # noqa: F401  (registers the name)
    model = timm.create_model("nas_efficientformer", **arch_config)
    model = timm.create_model("local-dir:path/to/export/timm", pretrained=True)   # what `nas export` writes

The exported folder is timm's own format (``config.json`` with ``architecture`` and ``model_args``, plus
``model.safetensors``), written by ``timm.models.save_for_hf``, so timm's scripts (``validate.py``, ``train.py``
with ``--model local-dir:...``) take it as they are.
"""
from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from supernet.static import EfficientFormerNet

__all__ = ["MODEL_NAME"]

MODEL_NAME = "nas_efficientformer"


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {"url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": None, "fixed_input_size": True,
            "crop_pct": 0.95, "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
            "first_conv": "stem.conv1", "classifier": ("head", "head_dist"), "license": "apache-2.0", **kwargs}


default_cfgs = generate_default_cfgs({MODEL_NAME: _cfg()})


@register_model
def nas_efficientformer(pretrained: bool = False, **kwargs: Any) -> EfficientFormerNet:
    """An EfficientFormer-family subnet; keyword arguments are ``EfficientFormerNet``'s (an ``arch_config``)."""
    # the input size is the arch's, not the registry default's (models of the `tiny` space take 64x64)
    img_size = kwargs.get("img_size", 224)
    img_size = img_size if isinstance(img_size, int) else int(img_size[0])   # saved configs hold (h, w)
    # num_classes stays the saved weights' (the pretrained_cfg read from the export's config.json): when a caller
    # asks for another count, timm sees the difference, drops the saved heads and initialises new ones
    overlay = {"input_size": (3, img_size, img_size), **(kwargs.pop("pretrained_cfg_overlay", None) or {})}
    out_indices = kwargs.pop("out_indices", 4)
    return build_model_with_cfg(EfficientFormerNet, MODEL_NAME, pretrained, pretrained_cfg_overlay=overlay,
                                feature_cfg=dict(out_indices=out_indices, feature_cls="getter"), **kwargs)
