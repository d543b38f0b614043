"""Train and val transforms: torchvision v2 on in-memory tensors, timm's standard ones on files."""

from __future__ import annotations

from typing import Callable

import timm.data
from torchvision.transforms import v2

# In-memory sets hold images in [0, 1]; they are normalised to [-1, 1] (the small ViTs' convention).
TENSOR_MEAN = (0.5, 0.5, 0.5)
TENSOR_STD = (0.5, 0.5, 0.5)


def tensor_transform(name: str, train: bool, augment: bool) -> Callable:
    """Transform for the in-memory sets: light augmentation that suits each, then normalisation.

    Digits get a small affine jitter (their black background makes the fill invisible); synthetic
    scenes only a horizontal flip (their labels and masks are invariant to it).
    """
    steps = []
    if train and augment:
        steps.append(v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), fill=0.0)
                     if name == "digits" else v2.RandomHorizontalFlip())
    steps.append(v2.Normalize(TENSOR_MEAN, TENSOR_STD))
    return v2.Compose(steps)


def file_transform(img_size: int, train: bool, augment: bool) -> Callable:
    """timm's standard ImageNet transforms (PIL images in, normalised tensors out)."""
    if train and augment:
        # A 0.08 minimum crop (ImageNet's) destroys 32 px images; 0.35 keeps the object.
        return timm.data.create_transform(img_size, is_training=True, scale=(0.35, 1.0))
    return timm.data.create_transform(img_size, is_training=False, crop_pct=1.0 if img_size <= 64 else None)
