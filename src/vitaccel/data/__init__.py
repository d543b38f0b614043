"""Data sets for training and evaluating ViTs: bundled digits, synthetic scenes, CIFAR, ImageFolder.

``build_datasets(DataConfig(...))`` returns a ``DataBundle`` with train and val sets of
``(image, label)`` pairs (normalised float tensors, 3 channels, ``img_size`` square), the class
names and the normalisation used. Sets without an official split are split by ``data.seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

from vitaccel.data.config import DATASETS, DataConfig
from vitaccel.data.split import seeded_split
from vitaccel.data.synthetic import COLOURS, SHAPES, render_scene
from vitaccel.data.tensors import TensorImageDataset
from vitaccel.errors import DataError

__all__ = ["COLOURS", "DATASETS", "DataBundle", "DataConfig", "DataError", "SHAPES", "TensorImageDataset",
           "build_datasets", "render_scene", "seeded_split"]


@dataclass
class DataBundle:
    """Train and val sets with what a model and a plot need to know about them."""

    train: Dataset
    val: Dataset
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _in_memory(cfg: DataConfig) -> DataBundle:
    from vitaccel.data.digits import load_digits_tensors
    from vitaccel.data.synthetic import load_synthetic_tensors
    from vitaccel.data.transforms import TENSOR_MEAN, TENSOR_STD, tensor_transform

    if cfg.name == "digits":
        full = TensorImageDataset(*load_digits_tensors(cfg.img_size))
        classes = [str(d) for d in range(10)]
    else:
        images, labels, masks = load_synthetic_tensors(cfg.num_samples, cfg.img_size, cfg.seed)
        full = TensorImageDataset(images, labels, masks=masks)
        classes = list(COLOURS)
    train_idx, val_idx = seeded_split(len(full), cfg.val_fraction, cfg.seed)
    return DataBundle(full.subset(train_idx, tensor_transform(cfg.name, True, cfg.augment)),
                      full.subset(val_idx, tensor_transform(cfg.name, False, False)),
                      classes, TENSOR_MEAN, TENSOR_STD)


def build_datasets(cfg: DataConfig) -> DataBundle:
    """Load (or generate) the data set ``cfg.name``; raises DataError when it is missing or empty."""
    if cfg.name in ("digits", "synthetic"):
        return _in_memory(cfg)
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from vitaccel.data.vision import load_cifar, load_image_folder
    train, val, classes = (load_cifar if cfg.name.startswith("cifar") else load_image_folder)(cfg)
    return DataBundle(train, val, classes, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
