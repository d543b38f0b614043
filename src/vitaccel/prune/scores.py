"""Token importance from the CLS query: TIS at the pruning layer and the teacher's target.

timm's fused attention (``F.scaled_dot_product_attention``) never materialises attention weights,
so the CLS row is recomputed explicitly from the block's own q and k: one query against all keys,
``N`` dot products per head, which leaves the fused kernel in charge of the full attention.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vitaccel.prune._timm import check_scorable, cls_query_keys, embed, qkv_layer


def cls_scores(attn: nn.Module, qkv: torch.Tensor, num_prefix: int,
               valid: torch.Tensor | None = None) -> torch.Tensor:
    """CLS attention over patch tokens from the output of ``attn.qkv``, shape (B, N_patches).

    The CLS row of the softmax attention (over all keys, prefix tokens included) is averaged over
    heads; the prefix entries (CLS, registers) are then removed and the rest renormalised to sum
    to 1. ``valid`` (B, N) bool: the real tokens of a padded batch (padding scores 0).
    Differentiable, float32.
    """
    q, k = cls_query_keys(attn, qkv)                        # (B, H, 1, D), (B, H, N, D)
    logits = q @ k.transpose(-2, -1)                        # (B, H, 1, N)
    if valid is not None:
        logits = logits.masked_fill(~valid[:, None, None, :], float("-inf"))
    row = logits.float().softmax(dim=-1).mean(dim=1)[:, 0]  # (B, N)
    patches = row[:, num_prefix:]
    return patches / patches.sum(dim=-1, keepdim=True)


def cls_attention(model: nn.Module, x: torch.Tensor, block: int = -1) -> torch.Tensor:
    """The CLS query's attention over patch tokens in ``model.blocks[block]``, shape (B, N_patches).

    Averaged over heads, CLS (and any register or distillation token) removed, renormalised to
    sum to 1: the teacher's token-distillation target (DESIGN.md section 10). ``block`` is 0-based
    (-1 = last). Works with fused attention on: only that block's q and k are computed and the
    blocks after it are not run; a pruning-patched model is scored on all tokens. Gradients flow
    unless the caller disables them.
    """
    index = check_scorable(model, block)
    h = embed(model, x)
    for blk in model.blocks[:index]:
        h = blk(h)
    target = model.blocks[index]
    qkv = qkv_layer(target)(target.norm1(h))
    return cls_scores(target.attn, qkv, model.num_prefix_tokens)
