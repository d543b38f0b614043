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


def _segment(stages: tuple[int, ...], block: int, after: bool) -> int:
    """Which token segment block ``block`` (0-based) sees: the stages before it (``after``: at it too)."""
    return sum(layer - 1 < block or (after and layer - 1 == block) for layer in stages)


def image_macs(model: nn.Module, num_patches: int, stages: tuple[int, ...], placement: str,
               lengths: list[torch.Tensor], packaged: bool,
               widths: list[int | torch.Tensor] | None = None) -> torch.Tensor:
    """Per-image MACs of a patched forward (int64, shape of each ``lengths`` entry).

    ``stages``: the 1-based pruning layers; ``lengths[s]``: each image's real tokens (prefix and
    package included) after stage ``s``; ``widths[s]``: the padded length after stage ``s`` (per image when
    split into sub-batches), for
    the executed work (attention, CLS-row scores and package sums over the padded length; the
    per-token layers on real tokens only). With ``placement="block"`` block P runs before the
    cut; with ``"attention"`` its attention runs before and its MLP after. ``packaged``: each
    stage computed a package token's weighted sum over the tokens it scored.
    """
    prefix, dim = model.num_prefix_tokens, model.embed_dim
    full = torch.full_like(lengths[0].to(torch.int64), prefix + num_patches)
    real = [full, *(n.to(torch.int64) for n in lengths)]
    attended = real if widths is None else [full, *(torch.as_tensor(w).to(full).expand_as(full) for w in widths)]
    # per segment: MACs per real token (linear layers) and per attended token squared (QK^T, AV)
    per_token, per_pair = [0] * len(real), [0] * len(real)
    inside = placement == "attention"
    for i, blk in enumerate(model.blocks):
        a, m = _segment(stages, i, False), _segment(stages, i, inside)
        per_token[a] += linear_macs(blk.attn)
        per_pair[a] += 2 * attention_dim(blk)
        per_token[m] += linear_macs(blk.mlp)
    total = torch.full_like(full, num_patches * patch_macs(model) + linear_macs(model.head))
    for s in range(len(real)):
        total = total + per_token[s] * real[s] + per_pair[s] * attended[s] ** 2
    for s, layer in enumerate(stages):
        # the CLS-row scores over the stage's keys, and the package's weighted sum over its patches
        total = total + attended[s] * (attention_dim(model.blocks[layer - 1]) + (dim if packaged else 0))
        if packaged:
            total = total - prefix * dim
    return total
