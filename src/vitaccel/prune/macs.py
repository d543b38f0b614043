"""Multiply-accumulates (MACs) of a pruned timm ViT forward, per image, from the executed shapes.

One MAC is one multiply and one add (2 FLOPs; the "GFLOPs" of the token-pruning literature are
MACs). Counted, as ``torch.utils.flop_counter`` counts them: matrix products only (linear
layers, the patch convolution, attention's ``QK^T`` and ``AV``, the CLS-row scores and the
package token's weighted sum); normalisation, softmax, activations and additions are not MACs.
A block on ``n`` tokens costs ``n * (sum of its linear layers' in*out) + 2 * n^2 * attn_dim``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vitaccel.prune._timm import attention_dim, patch_macs


def linear_macs(module: nn.Module) -> int:
    """MACs per token of all ``nn.Linear`` layers inside ``module`` (each applied once per token)."""
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


def block_macs(block: nn.Module, n: torch.Tensor | int,
               attended: torch.Tensor | int | None = None) -> torch.Tensor | int:
    """MACs of one ViT block on ``n`` tokens whose attention runs over ``attended`` (default n)."""
    attended = n if attended is None else attended
    return n * linear_macs(block) + 2 * attended * attended * attention_dim(block)


def image_macs(model: nn.Module, num_patches: int, layer: int, lengths: torch.Tensor,
               packaged: bool, attended: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image MACs of a patched forward (int64, shape of ``lengths``).

    Blocks 1..``layer`` run on all ``num_prefix_tokens + num_patches`` tokens (plus the CLS-row
    scores in block ``layer``); blocks after it on ``lengths`` tokens, with attention over
    ``attended`` tokens (default ``lengths``; the padded length for executed work);
    ``packaged``: the package token's weighted sum over the patches was computed.
    """
    n = model.num_prefix_tokens + num_patches
    fixed = (num_patches * patch_macs(model)
             + sum(block_macs(blk, n) for blk in model.blocks[:layer])
             + n * attention_dim(model.blocks[layer - 1])
             + (num_patches * model.embed_dim if packaged else 0)
             + linear_macs(model.head))
    lengths = lengths.to(torch.int64)
    return fixed + sum((block_macs(blk, lengths, attended) for blk in model.blocks[layer:]),
                       torch.zeros_like(lengths))
