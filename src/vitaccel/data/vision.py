"""Data sets read from disk with torchvision: CIFAR-10/100 and ImageFolder (ImageNet layout)."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset, Subset
from torchvision import datasets

from vitaccel.data.config import DataConfig
from vitaccel.data.split import seeded_split
from vitaccel.data.transforms import file_transform
from vitaccel.errors import DataError

DEFAULT_ROOT = Path("~/.cache/vitaccel/data").expanduser()


def load_cifar(cfg: DataConfig) -> tuple[Dataset, Dataset, list[str]]:
    """CIFAR's official train and test sets (the test set serves as val)."""
    cls = datasets.CIFAR10 if cfg.name == "cifar10" else datasets.CIFAR100
    root = Path(cfg.root).expanduser() if cfg.root else DEFAULT_ROOT
    try:
        train = cls(str(root), train=True, download=cfg.download,
                    transform=file_transform(cfg.img_size, True, cfg.augment))
        val = cls(str(root), train=False, download=cfg.download,
                  transform=file_transform(cfg.img_size, False, False))
    except (RuntimeError, OSError) as exc:  # not found offline, or the download failed
        how = ("the download failed (no network?): fetch it elsewhere and copy it there"
               if cfg.download else "set data.download=true (needs network) or copy it there")
        raise DataError(f"data.name={cfg.name}: not found in data.root={str(root)!r}; {how} ({exc})") from exc
    return train, val, list(train.classes)


def _image_folder(path: Path, train: bool, cfg: DataConfig) -> datasets.ImageFolder:
    try:
        return datasets.ImageFolder(str(path), transform=file_transform(cfg.img_size, train, cfg.augment))
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"data.root={str(path)!r}: no images found; ImageFolder needs one sub-folder per "
                        f"class holding image files ({exc})") from exc


def load_image_folder(cfg: DataConfig) -> tuple[Dataset, Dataset, list[str]]:
    """``root/train`` and ``root/val`` (ImageNet layout), or one class-folder tree split by ``data.seed``."""
    if not cfg.root:
        raise DataError("data.root: required for data.name=imagefolder (a folder of class sub-folders)")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root={str(root)!r}: folder does not exist")
    if (root / "train").is_dir() and (root / "val").is_dir():
        train, val = _image_folder(root / "train", True, cfg), _image_folder(root / "val", False, cfg)
        if train.classes != val.classes:
            raise DataError(f"data.root={str(root)!r}: train/ and val/ hold different class folders")
        return train, val, list(train.classes)
    train_view, val_view = _image_folder(root, True, cfg), _image_folder(root, False, cfg)
    train_idx, val_idx = seeded_split(len(train_view), cfg.val_fraction, cfg.seed)
    return Subset(train_view, train_idx.tolist()), Subset(val_view, val_idx.tolist()), list(train_view.classes)
