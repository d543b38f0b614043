"""Multiply-accumulates per image, counted over the shapes a forward actually executes.

Units: one MAC is one multiply plus one add, i.e. 2 FLOPs. The "GFLOPs" quoted for ViTs in the
token-pruning literature (fvcore) are MACs: DeiT-S at 224 px is 4.6 GMACs. Only matrix products
count (linear, convolution, batched matmul, attention); normalisation, softmax, activations and
elementwise ops do not, exactly as in ``torch.utils.flop_counter``.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count
from tqdm import tqdm


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # PyTorch's counter knows the CUDA attention kernels but not the CPU flash kernel.
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop}


def count_macs(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Total MACs (FLOPs / 2) of the matrix products run by ``fn(*args, **kwargs)``.

    ``torch.utils.flop_counter.FlopCounterMode``, extended with the CPU attention kernel.
    """
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops() // 2


@torch.no_grad()
def macs(model: nn.Module, x: torch.Tensor) -> dict:
    """MACs of one forward of ``model`` on the batch ``x``, per image.

    Returns ``{"macs": (B,), "macs_padded": (B,), "total": int}`` (int64 tensors on the CPU):
    ``total`` is what the whole batch executed, counted by ``FlopCounterMode`` (padding
    included). On a pruning-patched ViT (``vitaccel.prune.patch``) ``macs`` is each image's
    count for the tokens it kept (what it costs alone) and ``macs_padded`` its share of the
    executed work (attention over the batch's padded length), so ``macs_padded`` sums to
    ``total``. Otherwise every image does the same work and both are ``total / B``. Works for
    any model.
    """
    if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"x: expected a batch tensor with at least one image, got "
                         f"{type(x).__name__} of shape {tuple(getattr(x, 'shape', ()))}")
    batch = x.shape[0]
    total = count_macs(model, x)
    stats = getattr(getattr(model, "pruning", None), "stats", None)
    if not stats:
        per_image = torch.full((batch,), total // batch, dtype=torch.int64)
        return {"macs": per_image, "macs_padded": per_image.clone(), "total": total}
    result = {"macs": stats["macs"].cpu(), "macs_padded": stats["macs_padded"].cpu(), "total": total}
    if int(result["macs_padded"].sum()) != total:
        warnings.warn(f"per-image MACs sum to {int(result['macs_padded'].sum())} but "
                      f"{total} were counted: the model has layers the pruning count does not know",
                      stacklevel=2)
    return result


def macs_over(model: nn.Module, batches: Iterable, progress: bool = False) -> dict:
    """Per-image MACs over a data set: ``macs`` / ``macs_padded`` for every image, and their means.

    ``batches`` yields image tensors or ``(images, labels, ...)`` tuples, as a DataLoader does.
    """
    per_image, padded = [], []
    for batch in tqdm(batches, desc="MACs", disable=not progress):
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        result = macs(model, images)
        per_image.append(result["macs"])
        padded.append(result["macs_padded"])
    if not per_image:
        raise ValueError("batches: is empty; give at least one batch of images")
    all_macs, all_padded = torch.cat(per_image), torch.cat(padded)
    return {"macs": all_macs, "macs_padded": all_padded,
            "mean": all_macs.double().mean().item(), "mean_padded": all_padded.double().mean().item()}
