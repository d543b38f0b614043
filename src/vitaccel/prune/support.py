"""Which timm ViTs token pruning handles, with an error that says why when it cannot."""

from __future__ import annotations

import torch.nn as nn
from timm.layers import Attention, PatchEmbed
from timm.models.vision_transformer import Block, VisionTransformer

POOLS = ("token", "avg")


def check_scorable(model: nn.Module, block: int) -> int:
    """Check that the CLS attention of ``model.blocks[block]`` can be computed; return the index.

    ``block`` is 0-based (negative counts from the end). Needs a timm ``VisionTransformer`` with a
    class token whose block is a timm ``Block`` with ``Attention``.
    """
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"model: expected a timm VisionTransformer, got {type(model).__name__}")
    if getattr(model, "cls_token", None) is None:
        raise ValueError("model: has no class token (class_token=False); token importance comes "
                         "from the CLS attention, so a CLS token is required")
    depth = len(model.blocks)
    if isinstance(block, bool) or not isinstance(block, int) or not -depth <= block < depth:
        raise ValueError(f"block: value {block!r} is out of range; use an integer in "
                         f"[{-depth}, {depth - 1}] (0-based, -1 = last) for this {depth}-block model")
    index = block % depth
    _check_block(model, index)
    return index


def _check_block(model: nn.Module, index: int) -> None:
    blk = model.blocks[index]
    if type(blk) is not Block or not isinstance(blk.attn, Attention):
        raise ValueError(f"model: block {index} is {type(blk).__name__} with "
                         f"{type(getattr(blk, 'attn', None)).__name__}; only timm Block with "
                         "Attention (pre-norm ViT blocks, fused attention or not) is supported")


def check_prunable(model: nn.Module, layer: int) -> None:
    """Check that ``model`` can be patched for pruning at 1-based ``layer``; raise naming the problem."""
    if getattr(model, "dist_token", None) is not None:
        raise ValueError("model: has a distillation token (DeiT *_distilled); its two-token head "
                         "is not supported by token pruning, use the non-distilled model")
    check_scorable(model, 0)
    depth = len(model.blocks)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= depth:
        raise ValueError(f"layer: value {layer!r} is out of range; the pruning layer P is 1-based, "
                         f"use 1 <= layer <= {depth} for this {depth}-block model")
    for index in range(depth):
        _check_block(model, index)
    if model.global_pool not in POOLS or getattr(model, "attn_pool", None) is not None:
        raise ValueError(f"model: global_pool {model.global_pool!r} is not supported; use one of "
                         f"{list(POOLS)} (avg pools over real tokens only)")
    if model.global_pool == "avg" and getattr(model, "pool_include_prefix", False):
        raise ValueError("model: pool_include_prefix=True is not supported; avg pooling over "
                         "patch tokens only")
    if not isinstance(model.patch_embed, PatchEmbed) or not isinstance(model.patch_embed.proj, nn.Conv2d):
        raise ValueError(f"model: patch embedding {type(model.patch_embed).__name__} is not supported; "
                         "use timm PatchEmbed (a strided convolution)")
