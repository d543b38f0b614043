"""A fixed, seeded train/val split of ``n`` items."""

from __future__ import annotations

import torch


def seeded_split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (train_indices, val_indices): a permutation of ``range(n)`` fixed by ``seed``."""
    if n < 2:
        raise ValueError(f"n: {n} items cannot be split into train and val; at least 2 are needed")
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:].sort().values, perm[:n_val].sort().values
