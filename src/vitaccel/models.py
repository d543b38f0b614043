"""Small vision transformers for 32-64 px images, registered with timm, and ``create_model``.

The timm zoo starts at 224 px ViTs that are far too slow to train on a laptop. These sizes are
ordinary timm ``VisionTransformer`` models (CLS token, learned position embedding), so token
pruning, emulation and every timm tool work on them unchanged. Their position embedding starts
as a 2D sin-cos table instead of small noise: from scratch on small data sets (1-2k images)
that makes them converge about twice as fast. Importing this module registers them;
``create_model`` accepts their names and any other timm model name.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn as nn
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from vitaccel.configtools import ConfigError

__all__ = ["SMALL_VITS", "UNSAFE_KWARGS", "create_model", "model_kwargs_problem"]

# create_model arguments that make timm read other files or weights: never taken from configs or
# checkpoints (``pretrained`` is a separate, explicit switch), nor the ones vitaccel sets itself.
UNSAFE_KWARGS = ("checkpoint_path", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_strict",
                 "cache_dir", "features_only", "num_classes", "img_size")
_PLAIN = (bool, int, float, str, type(None))

# name -> architecture; images are 32 px by default, ``img_size=`` changes that (64 px works).
SMALL_VITS: dict[str, dict] = {
    "vit_pico_patch4_32": dict(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0),   # tests
    "vit_nano_patch4_32": dict(embed_dim=64, depth=6, num_heads=4, mlp_ratio=2.0),   # digits
    "vit_micro_patch4_32": dict(embed_dim=128, depth=6, num_heads=4, mlp_ratio=3.0),  # synthetic, CIFAR
}


def _cfg() -> dict:
    # No pretrained weights: these models are trained from scratch by ``vitaccel train``.
    return dict(url="", num_classes=10, input_size=(3, 32, 32), pool_size=None, crop_pct=1.0,
                interpolation="bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                first_conv="patch_embed.proj", classifier="head")


default_cfgs = generate_default_cfgs({name: _cfg() for name in SMALL_VITS})


def _create(name: str, pretrained: bool, **kwargs: Any) -> VisionTransformer:
    args = dict(img_size=32, patch_size=4, num_classes=10, **SMALL_VITS[name])
    args.update(kwargs)
    model = build_model_with_cfg(VisionTransformer, name, pretrained,
                                 pretrained_filter_fn=checkpoint_filter_fn, **args)
    if model.pos_embed is not None:
        table = build_sincos2d_pos_embed(list(model.patch_embed.grid_size), model.embed_dim)
        with torch.no_grad():  # the last grid_h * grid_w entries are the patches' (prefix ones may precede)
            model.pos_embed[0, -len(table):] = table
    return model


@register_model
def vit_pico_patch4_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Pico/4 at 32 px: 32-wide, 2 blocks; for tests."""
    return _create("vit_pico_patch4_32", pretrained, **kwargs)


@register_model
def vit_nano_patch4_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Nano/4 at 32 px: 64-wide, 6 blocks, 4 heads; trains on digits in about a minute."""
    return _create("vit_nano_patch4_32", pretrained, **kwargs)


@register_model
def vit_micro_patch4_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Micro/4 at 32 px: 128-wide, 6 blocks, 4 heads; for synthetic scenes and CIFAR."""
    return _create("vit_micro_patch4_32", pretrained, **kwargs)


def model_kwargs_problem(kwargs: object) -> str | None:
    """What is wrong with ``kwargs`` as extra ``create_model`` arguments from a config (None: fine).

    A mapping of names to plain values (numbers, strings, booleans, null, or lists of them), none
    of ``UNSAFE_KWARGS``.
    """
    if not isinstance(kwargs, dict):
        return "must be a mapping of keyword arguments"
    for key, value in kwargs.items():
        if not isinstance(key, str) or key in UNSAFE_KWARGS:
            return f"key {key!r} is not allowed (not allowed: {list(UNSAFE_KWARGS)})"
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(v, _PLAIN) for v in items):
            return f"value of {key!r} must be a number, string, boolean, null or a list of them"
    return None


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build any timm model by name (vitaccel's small ViTs included); kwargs go to timm.

    Raises ConfigError (a ValueError) naming the model when timm does not know it.
    """
    if not isinstance(name, str) or not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:5] if isinstance(name, str) else []
        hint = f"; similar names: {close}" if close else "; see timm.list_models() or vitaccel.models.SMALL_VITS"
        raise ConfigError(f"model: {name!r} is not a timm model name{hint}")
    return timm.create_model(name, **kwargs)
