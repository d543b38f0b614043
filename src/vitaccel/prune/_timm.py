"""Every place token pruning touches timm: what it reads of ``VisionTransformer``, ``Block`` and
``Attention``, and how it calls them. A timm change is fixed here.

Needs timm >= 1.0.16, the first release whose ``Block.forward`` takes ``attn_mask`` (the padding
mask of variable-length pruned batches). Read: ``VisionTransformer.patch_embed`` (a ``PatchEmbed``
with a ``Conv2d`` ``proj``), ``_pos_embed``, ``patch_drop``, ``norm_pre``, ``blocks``, ``norm``,
``global_pool``/``pool``, ``num_prefix_tokens``, ``cls_token``, ``dist_token``, ``attn_pool``,
``pool_include_prefix``, ``embed_dim``, ``head``, ``grad_checkpointing``; ``Block.norm1``,
``attn``, ``ls1``, ``drop_path1``, ``norm2``, ``mlp``, ``ls2``, ``drop_path2`` (its forward, split in two
for pruning between attention and MLP); ``Attention.qkv`` (fused ``3 x heads x head_dim`` output), ``q_norm``,
``k_norm``, ``scale``, ``num_heads``, ``head_dim``, ``fused_attn``, ``attn_drop``, ``norm``, ``gate``
(when present), ``proj``, ``proj_drop`` (block P's attention is written out, to return its qkv).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Attention, PatchEmbed
from timm.models.vision_transformer import Block, VisionTransformer

POOLS = ("token", "avg")

__all__ = ["POOLS", "VisionTransformer", "attention_dim", "check_prunable", "check_scorable", "cls_query_keys",
           "embed", "patch_macs", "per_token_layers", "qkv_layer", "run_attention_part", "run_block", "run_block_part"]


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


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The tokens entering block 1 of a timm ViT, exactly as its ``forward_features`` makes them."""
    x = model.patch_embed(x)
    x = model._pos_embed(x)
    x = model.patch_drop(x)
    return model.norm_pre(x)


def run_block(blk: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
    """One timm ``Block`` forward, with a boolean SDPA key mask (True = attend) or none."""
    return blk(x) if attn_mask is None else blk(x, attn_mask=attn_mask)


def run_block_part(blk: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None, part: str) -> torch.Tensor:
    """Half of timm ``Block.forward``: ``part="attention"`` (residual attention branch) or ``"mlp"``."""
    if part == "attention":
        return x + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x), attn_mask=attn_mask)))
    return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


def run_attention_part(blk: nn.Module, x: torch.Tensor,
                       attn_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``run_block_part(..., "attention")`` written out from timm ``Attention.forward``, also returning
    its ``qkv`` output (the CLS scores need it; no hook, so ``torch.compile`` traces it)."""
    attn = blk.attn
    h = blk.norm1(x)
    batch, n, _ = h.shape
    gate = attn.gate(h).sigmoid() if getattr(attn, "gate", None) is not None else None
    qkv = attn.qkv(h)
    q, k, v = qkv.reshape(batch, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    if attn.fused_attn:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=attn.attn_drop.p if attn.training else 0.0)
    else:
        logits = (q * attn.scale) @ k.transpose(-2, -1)
        if attn_mask is not None:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        out = attn.attn_drop(logits.softmax(dim=-1)) @ v
    out = attn.norm(out.transpose(1, 2).reshape(batch, n, attention_dim(blk)))
    out = attn.proj_drop(attn.proj(out if gate is None else out * gate))
    return x + blk.drop_path1(blk.ls1(out)), qkv


def qkv_layer(blk: nn.Module) -> nn.Module:
    """The fused q/k/v projection of a block's attention (its output gives the CLS scores)."""
    return blk.attn.qkv


def per_token_layers(blk: nn.Module) -> tuple[nn.Module, ...]:
    """The layers of a block that process each token on its own: qkv, output projection, MLP."""
    return blk.attn.qkv, blk.attn.proj, blk.mlp


def cls_query_keys(attn: nn.Module, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """From the output of ``attn.qkv`` (B, N, 3 * C): the scaled CLS query (B, H, 1, D) and the keys
    (B, H, N, D), normalised as ``Attention`` normalises them."""
    batch, n, _ = qkv.shape
    qkv = qkv.reshape(batch, n, 3, attn.num_heads, attn.head_dim)
    q = attn.q_norm(qkv[:, :1, 0].transpose(1, 2))
    k = attn.k_norm(qkv[:, :, 1].transpose(1, 2))
    return q * attn.scale, k


def attention_dim(blk: nn.Module) -> int:
    """Heads x head dimension of a block's attention (the width of its q, k and v)."""
    return blk.attn.num_heads * blk.attn.head_dim


def patch_macs(model: nn.Module) -> int:
    """MACs of the patch embedding per patch (its convolution)."""
    conv = model.patch_embed.proj
    return conv.out_channels * conv.in_channels // conv.groups * conv.weight[0, 0].numel()
