"""Validation of a pruning-patched model: top-1 accuracy, tokens kept and MACs per image.

Works in one process or sharded over ``torchrun`` ranks (each image counted once, sums
all-reduced), at whatever density ``model.pruning`` is configured for.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from vitaccel.train.amp import autocast
from vitaccel.train.distributed import LOCAL, Dist


def val_loader(dataset: Dataset, batch_size: int, dist: Dist = LOCAL, num_workers: int = 0) -> DataLoader:
    """An in-order loader over this rank's share of ``dataset`` (no padding, no duplicates)."""
    return DataLoader(Subset(dataset, dist.shard(len(dataset))), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers, pin_memory=dist.device.type == "cuda")


@torch.no_grad()
def validate(model: nn.Module, loader: DataLoader, dist: Dist = LOCAL, amp: str = "none",
             progress: bool = False, desc: str = "eval") -> dict[str, float]:
    """Top-1 (%), mean/std of patch tokens kept, of sequence length after P and of MACs per image.

    ``macs_padded`` counts the padding the batched variable-length run executed as well.
    """
    if not hasattr(model, "pruning"):
        raise ValueError("model: validate needs a vitaccel.prune-patched model (for token and MAC counts)")
    was_training = model.training
    model.eval()
    keys = ("kept", "tokens", "macs", "macs_padded")
    names = ["images", "correct", *keys, *(k + "_sq" for k in keys)]
    sums = torch.zeros(len(names), dtype=torch.float64, device=dist.device)  # no host sync per batch
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not (progress and dist.is_main)):
        x, y = x.to(dist.device, non_blocking=True), y.to(dist.device, non_blocking=True)
        with autocast(amp, dist.device):
            logits = model(x)
        stats = [model.pruning.stats[k].double() for k in keys]
        sums += torch.stack([torch.tensor(float(len(y)), dtype=torch.float64, device=dist.device),
                             (logits.argmax(-1) == y).sum().double(),
                             *(v.sum() for v in stats), *((v * v).sum() for v in stats)])
    model.train(was_training)
    total = dict(zip(names, dist.sum(sums)))
    n = max(total["images"], 1)
    out = {"acc": 100.0 * total["correct"] / n, "images": int(total["images"])}
    for k in keys:
        mean = total[k] / n
        out[k] = mean
        out[k + "_std"] = math.sqrt(max(total[k + "_sq"] / n - mean * mean, 0.0))
    return out


def validate_at(model: nn.Module, loader: DataLoader, setting: tuple[str, float] | None, dist: Dist = LOCAL,
                amp: str = "none", progress: bool = False) -> dict:
    """``validate`` at one density, ``setting`` = (rule, value) or None for dense; a labelled row."""
    if setting is None:
        model.pruning.configure(dense=True)
        head = {"setting": "dense", "rule": "", "value": ""}
    else:
        model.pruning.configure(dense=False, rule=setting[0], value=setting[1])
        head = {"setting": f"{setting[0]}={setting[1]:g}", "rule": setting[0], "value": setting[1]}
    return {**head, **validate(model, loader, dist, amp, progress, desc=head["setting"])}
