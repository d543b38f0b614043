"""Packing kept tokens into a batch of variable-length sequences.

Each image's sequence after pruning is ``[prefix (CLS, registers), kept tokens in their order,
package token (if any token was pruned and packaging is on)]``; at a later stage the previous
package is scored and kept or fused like any other token (EViT's rule). Sequences are padded with
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
    index: torch.Tensor                 # (B, L_max - prefix) original patch of each token, -1: package/padding


def package_tokens(patches: torch.Tensor, tis: torch.Tensor, pruned: torch.Tensor) -> torch.Tensor:
    """TIS-weighted mean of each image's pruned patch tokens, shape (B, C).

    Rows without pruned tokens give zeros (never NaN, also in the backward pass).
    """
    weights = tis * pruned
    total = weights.sum(dim=1, keepdim=True)
    total = torch.where(total > 0, total, torch.ones_like(total))
    return (weights / total).unsqueeze(1).to(patches.dtype).matmul(patches).squeeze(1)


def pack(x: torch.Tensor, tis: torch.Tensor, keep: torch.Tensor, num_prefix: int, package: bool,
         index: torch.Tensor, real: Optional[torch.Tensor] = None, count: Optional[int] = None) -> Packed:
    """Keep the prefix and the ``keep`` tokens of ``x`` (B, num_prefix + N, C), add packages, pad.

    ``index`` (B, N): the original patch of each token (-1: a package or padding), carried along;
    ``real`` (B, N) bool: the real tokens when ``x`` is itself padded (None: all real);
    ``count``: the patches every image keeps, when known (``topk``): no host sync, no padding.
    """
    prefix, patches = x[:, :num_prefix], x[:, num_prefix:]
    batch, n, dim = patches.shape
    kept = keep.sum(dim=1)
    has_package = (kept < (n if real is None else real.sum(dim=1))) & package
    lengths = kept + has_package
    if batch == 0:  # an empty batch: nothing to pack, no padding
        return Packed(x[:, :num_prefix], lengths + num_prefix, None, index[:, :0])
    if count is None:
        shortest, width = torch.stack(torch.aminmax(lengths)).tolist()  # one host sync
    else:
        shortest = width = count + int(package and count < n)
    # kept indices first (original order), then pruned ones: the first `width` columns suffice
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :width]
    tokens = patches.gather(1, order.unsqueeze(-1).expand(-1, -1, dim))
    position = torch.arange(width, device=x.device)
    index = index.gather(1, order).masked_fill(position >= kept[:, None], -1)
    if package:
        pruned = ~keep if real is None else real & ~keep
        at_package = (position == kept[:, None]) & has_package[:, None]
        tokens = torch.where(at_package[..., None], package_tokens(patches, tis, pruned)[:, None], tokens)
    if shortest == width:
        return Packed(torch.cat([prefix, tokens], dim=1), lengths + num_prefix, None, index)
    real = position < lengths[:, None]
    tokens = tokens.masked_fill(~real[..., None], 0)
    valid = torch.cat([real.new_ones(batch, num_prefix), real], dim=1)
    return Packed(torch.cat([prefix, tokens], dim=1), lengths + num_prefix, valid, index)
