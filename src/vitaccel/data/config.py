"""``DataConfig``: which data set, at what size, split how; validated by ``vitaccel.configtools``."""

from __future__ import annotations

from dataclasses import dataclass

from vitaccel.configtools import field, validate

DATASETS = ("digits", "synthetic", "cifar10", "cifar100", "imagefolder")


def _positive(v: int) -> str | None:
    return None if v > 0 else "must be > 0"


@dataclass
class DataConfig:
    """The data section of a training config.

    ``seed`` fixes the train/val split (and the synthetic scenes), independently of the
    training seed, so runs with different training seeds are validated on the same images.
    """

    name: str = field("digits", choices=DATASETS, help="data set")
    root: str | None = field(None, help="folder: CIFAR cache, or ImageFolder root (train/ and val/, or class folders)")
    img_size: int = field(32, check=lambda v: None if v >= 8 else "must be >= 8 pixels", help="image side in pixels")
    val_fraction: float = field(0.2, check=lambda v: None if 0 < v < 1 else "must be in (0, 1)",
                                help="held-out fraction where the data set has no official split")
    seed: int = field(0, help="seed of the train/val split and of the synthetic scenes")
    augment: bool = field(True, help="random augmentation of training images")
    download: bool = field(False, help="CIFAR: download when missing (needs network)")
    num_samples: int = field(4000, check=_positive, help="synthetic: number of scenes")

    def __post_init__(self) -> None:
        validate(self, "data.")
