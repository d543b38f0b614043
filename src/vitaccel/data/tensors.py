"""An in-memory image data set (normalised float tensors) with optional per-pixel object masks."""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset


class TensorImageDataset(Dataset):
    """Images (N, C, H, W) float, labels (N,), optional masks (N, H, W) bool, a per-image transform.

    Used for the bundled and generated data sets, which fit in memory and are cheapest kept
    as tensors. ``masks`` mark the pixels of the labelled object (synthetic scenes).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None,
                 masks: torch.Tensor | None = None) -> None:
        if len(images) != len(labels) or (masks is not None and len(masks) != len(images)):
            raise ValueError(f"images ({len(images)}), labels ({len(labels)}) and masks "
                             f"({None if masks is None else len(masks)}) must have the same length")
        self.images, self.labels, self.transform, self.masks = images, labels, transform, masks

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        return (self.transform(img) if self.transform else img), int(self.labels[i])

    def subset(self, indices: torch.Tensor, transform: Callable | None = None) -> "TensorImageDataset":
        """The items at ``indices`` with another transform (how train and val views are made)."""
        masks = None if self.masks is None else self.masks[indices]
        return TensorImageDataset(self.images[indices], self.labels[indices], transform, masks)

    def patch_masks(self, patch_size: int, min_fraction: float = 0.25) -> torch.Tensor:
        """(N, grid_h * grid_w) bool: patches whose pixels are at least ``min_fraction`` object.

        Patches are in the row-major order of a ViT's patch tokens.
        """
        if self.masks is None:
            raise ValueError("patch_masks: this data set has no object masks (only 'synthetic' has them)")
        h, w = self.masks.shape[-2:]
        if h % patch_size or w % patch_size:
            raise ValueError(f"patch_size: {patch_size} does not divide the image size {h}x{w}")
        cover = torch.nn.functional.avg_pool2d(self.masks[:, None].float(), patch_size)
        return (cover >= min_fraction).flatten(1)
