"""``vitaccel emulate``: a model (timm name or vitaccel checkpoint) and a data set on one accelerator config.

Builds the model and the validation batches, then calls ``evaluate``; prints the report and
optionally writes it as JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from vitaccel.emulate.backend import resolve_config
from vitaccel.emulate.errors import EmulateError
from vitaccel.emulate.evaluate import evaluate

RANDOM = "random"


def _model(name: str | None, checkpoint: str | None, num_classes: int | None, img_size: int | None,
           pretrained: bool) -> nn.Module:
    if checkpoint is not None:
        from vitaccel.train.build import model_from_checkpoint
        return model_from_checkpoint(checkpoint, pruned=False)[0]
    from vitaccel.models import create_model
    kwargs: dict[str, Any] = {"pretrained": pretrained}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if img_size is not None:
        kwargs["img_size"] = img_size
    return create_model(name, **kwargs)


def _defaults(name: str | None, checkpoint: str | None) -> tuple[int, str | None]:
    """Image size and data set the model was built for: the checkpoint's, or timm's default size."""
    if checkpoint is not None:
        from vitaccel.train.checkpoint import load_checkpoint
        ckpt = load_checkpoint(checkpoint)
        data = (ckpt.get("config") or {}).get("data") or {}
        return ckpt["model_args"]["kwargs"].get("img_size", data.get("img_size", 32)), data.get("name")
    import timm.models

    from vitaccel.models import create_model  # registers vitaccel's small ViTs with timm
    if not timm.models.is_model(name):
        try:
            create_model(name)  # raises the error that names close matches
        except ValueError as exc:
            raise EmulateError(str(exc)) from None
    return timm.models.get_pretrained_cfg(name).input_size[-1], None


def _batches(data: str, img_size: int, batch_size: int, seed: int) -> tuple[Iterable, int | None]:
    """Validation batches of ``data`` and its class count (None for random inputs)."""
    if data == RANDOM:
        g = torch.Generator().manual_seed(seed)
        return _RandomImages(img_size, batch_size, g), None
    from vitaccel.data import DATASETS, DataConfig, DataError, build_datasets
    if data in DATASETS:
        cfg = DataConfig(name=data, img_size=img_size, augment=False, seed=seed)
    elif Path(data).is_dir():
        cfg = DataConfig(name="imagefolder", root=data, img_size=img_size, augment=False, seed=seed)
    else:
        raise DataError(f"--data: {data!r} is neither a data set name ({', '.join(DATASETS)}, {RANDOM}) "
                        f"nor an existing folder")
    bundle = build_datasets(cfg)
    return DataLoader(bundle.val, batch_size=batch_size, shuffle=False), bundle.num_classes


class _RandomImages:
    """Endless batches of standard-normal images (no labels): for models with no data at hand."""

    def __init__(self, img_size: int, batch_size: int, generator: torch.Generator) -> None:
        self.shape, self.generator = (batch_size, 3, img_size, img_size), generator

    def __iter__(self):
        while True:
            yield torch.randn(self.shape, generator=self.generator)


def run_emulate(*, model: str | None, checkpoint: str | None, accelerator: str, data: str | None,
                batches: int, batch_size: int, img_size: int | None, exact: bool, calib_batches: int,
                calib_method: str, skip: list[str], json_path: str | None, pretrained: bool,
                seed: int, progress: bool = True) -> int:
    """The ``vitaccel emulate`` command; returns the exit status."""
    if (model is None) == (checkpoint is None):
        raise EmulateError("give exactly one of --model NAME and --checkpoint PATH")
    for flag, value in (("--batches", batches), ("--batch-size", batch_size), ("--calib-batches", calib_batches)):
        if value < 1:
            raise EmulateError(f"{flag}: {value} is not allowed; it must be >= 1")
    config = resolve_config(accelerator)  # a bad config fails before any model is built
    default_size, default_data = _defaults(model, checkpoint)
    size = img_size or default_size
    loader, num_classes = _batches(data or default_data or "digits", size, batch_size, seed)
    net = _model(model, checkpoint, num_classes, img_size, pretrained).eval()
    report = evaluate(net, config, loader, max_batches=batches, calib_batches=calib_batches,
                      calib_method=calib_method, progress=progress, exact=exact, skip=tuple(skip))
    print(report.table())
    if json_path:
        report.to_json(json_path)
        print(f"report written to {json_path}")
    return 0
