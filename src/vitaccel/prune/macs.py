"""Multiply-accumulates (MACs) of a pruned timm ViT forward, per image, from the executed shapes.

One MAC is one multiply and one add (2 FLOPs; the "GFLOPs" of the token-pruning literature are
MACs). Counted, as ``torch.utils.flop_counter`` counts them: matrix products only (linear
layers, the patch convolution, attention's ``QK^T`` and ``AV``, the CLS-row scores and the
package token's weighted sum); normalisation, softmax, activations and additions are not MACs.
A block on ``n`` tokens costs ``n * (sum of its linear layers' in*out) + 2 * n^2 * attn_dim``.
"""

from __future__ import annotations

from typing import NamedTuple

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


class Coefficients(NamedTuple):
    """What a patched forward's MACs per image are made of, for one stage layout and placement."""

    per_patch: int             # the patch embedding, per patch
    head: int                  # the classifier head
    per_token: list[int]       # per segment (before stage 1, after each stage): MACs per real token
    per_pair: list[int]        # per segment: MACs per attended token squared (QK^T, AV)
    per_scored: list[int]      # per stage: MACs per scored token (CLS-row scores, the package's sum)
    package_saving: int        # per packaged stage: the prefix tokens the package sum skips, in MACs


def coefficients(model: nn.Module, stages: tuple[int, ...], placement: str, packaged: bool) -> Coefficients:
    """The ``Coefficients`` of ``model`` pruned at 1-based ``stages`` with ``placement``."""
    prefix, dim = model.num_prefix_tokens, model.embed_dim
    per_token, per_pair = [0] * (len(stages) + 1), [0] * (len(stages) + 1)
    inside = placement == "attention"
    for i, blk in enumerate(model.blocks):
        a, m = _segment(stages, i, False), _segment(stages, i, inside)
        per_token[a] += linear_macs(blk.attn)
        per_pair[a] += 2 * attention_dim(blk)
        per_token[m] += linear_macs(blk.mlp)
    per_scored = [attention_dim(model.blocks[layer - 1]) + (dim if packaged else 0) for layer in stages]
    return Coefficients(patch_macs(model), linear_macs(model.head), per_token, per_pair, per_scored,
                        prefix * dim if packaged else 0)


def image_macs(model: nn.Module, num_patches: int, stages: tuple[int, ...], placement: str,
               lengths: list[torch.Tensor], packaged: bool,
               widths: list[int | torch.Tensor] | None = None, coeffs: Coefficients | None = None) -> torch.Tensor:
    """Per-image MACs of a patched forward (int64, shape of each ``lengths`` entry).

    ``stages``: the 1-based pruning layers; ``lengths[s]``: each image's real tokens (prefix and
    package included) after stage ``s``; ``widths[s]``: the padded length after stage ``s`` (per image when
    split into sub-batches), for
    the executed work (attention, CLS-row scores and package sums over the padded length; the
    per-token layers on real tokens only). With ``placement="block"`` block P runs before the
    cut; with ``"attention"`` its attention runs before and its MLP after. ``packaged``: each
    stage computed a package token's weighted sum over the tokens it scored. ``coeffs``: the
    ``coefficients`` of these settings when already known (a patched forward keeps them).
    """
    c = coefficients(model, stages, placement, packaged) if coeffs is None else coeffs
    full = torch.full_like(lengths[0].to(torch.int64), model.num_prefix_tokens + num_patches)
    real = [full, *(n.to(torch.int64) for n in lengths)]
    attended = real if widths is None else [full, *(torch.as_tensor(w).to(full).expand_as(full) for w in widths)]
    total = torch.full_like(full, num_patches * c.per_patch + c.head)
    for s in range(len(real)):
        total = total + c.per_token[s] * real[s] + c.per_pair[s] * attended[s] ** 2
    for s in range(len(stages)):
        total = total + attended[s] * c.per_scored[s] - c.package_saving
    return total
