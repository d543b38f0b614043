"""Packing kept tokens into a batch of variable-length sequences.

Each image's sequence after pruning is ``[prefix (CLS, registers), kept patches in their original
order, package token (if any token was pruned and packaging is on)]``. Sequences are padded with
zeros to the batch's longest one; a boolean key mask keeps the padding out of every attention
row, so each image's real tokens see exactly what they would see alone, and the per-token layers
skip the padding altogether (``rows.RealRows``). When every image has the same length (``topk``)
there is no padding and no mask at all.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch


class Packed(NamedTuple):
    tokens: torch.Tensor                # (B, L_max, C)
    lengths: torch.Tensor               # (B,) real tokens per image, prefix and package included
    valid: Optional[torch.Tensor]       # (B, L_max) bool, True on real tokens; None: no padding


def package_tokens(patches: torch.Tensor, tis: torch.Tensor, pruned: torch.Tensor) -> torch.Tensor:
    """TIS-weighted mean of each image's pruned patch tokens, shape (B, C).

    Rows without pruned tokens give zeros (never NaN, also in the backward pass).
    """
    weights = tis * pruned
    total = weights.sum(dim=1, keepdim=True)
    total = torch.where(total > 0, total, torch.ones_like(total))
    return (weights / total).unsqueeze(1).to(patches.dtype).matmul(patches).squeeze(1)


def pack(x: torch.Tensor, tis: torch.Tensor, keep: torch.Tensor, num_prefix: int,
         package: bool) -> Packed:
    """Keep the prefix and the ``keep`` patches of ``x`` (B, num_prefix + N, C), add packages, pad."""
    prefix, patches = x[:, :num_prefix], x[:, num_prefix:]
    batch, n, dim = patches.shape
    kept = keep.sum(dim=1)
    has_package = (kept < n) & package
    lengths = kept + has_package
    if batch == 0:  # an empty batch: nothing to pack, no padding
        return Packed(x[:, :num_prefix], lengths + num_prefix, None)
    shortest, width = torch.stack(torch.aminmax(lengths)).tolist()  # one host sync
    # kept indices first (original order), then pruned ones: the first `width` columns suffice
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :width]
    tokens = patches.gather(1, order.unsqueeze(-1).expand(-1, -1, dim))
    position = torch.arange(width, device=x.device)
    if package:
        at_package = (position == kept[:, None]) & has_package[:, None]
        tokens = torch.where(at_package[..., None], package_tokens(patches, tis, ~keep)[:, None], tokens)
    if shortest == width:
        return Packed(torch.cat([prefix, tokens], dim=1), lengths + num_prefix, None)
    real = position < lengths[:, None]
    tokens = tokens.masked_fill(~real[..., None], 0)
    valid = torch.cat([real.new_ones(batch, num_prefix), real], dim=1)
    return Packed(torch.cat([prefix, tokens], dim=1), lengths + num_prefix, valid)
