"""Emulate a model over a data set: calibrate (integer datapaths), run every batch, report.

What ``vitaccel emulate`` does, as a function: the report gets the model-level output SQNR
over all evaluated batches and, when the batches carry labels, top-1 accuracy of the emulated
and the float32 model. Calibration data is always held apart from evaluation data.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterable

import torch
import torch.nn as nn
from torch import Tensor
from tqdm.auto import tqdm

from vitaccel.emulate.backend import Backend
from vitaccel.emulate.calibration import calibrate, call_model
from vitaccel.emulate.options import EmulateOptions
from vitaccel.emulate.report import Report
from vitaccel.emulate.run import emulate
from vitaccel.errors import EmulateError


def _split(batch: Any) -> tuple[Any, Tensor | None]:
    """``(inputs, labels)`` pairs (what a classification DataLoader yields) or inputs alone."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[1], Tensor) \
            and batch[1].dtype in (torch.int64, torch.int32) and batch[1].dim() == 1:
        return batch[0], batch[1]
    return batch, None


def evaluate(model: nn.Module, config: Any, batches: Iterable[Any], *, max_batches: int | None = None,
             calib_batches: int = 4, calib_method: str = "max", calib_data: Iterable[Any] | None = None,
             smooth: float | dict[str, float] | None = None, progress: bool = False,
             **options: Any) -> Report:
    """Run ``model`` (in eval mode) on the emulated accelerator over ``batches`` and report.

    ``batches`` yields ``(inputs, labels)`` pairs or model inputs alone (tensor, tuple of args,
    dict of kwargs). Integer datapaths are first calibrated (``calib_method``, ``smooth``: see
    ``calibrate``) on ``calib_batches`` batches of ``calib_data``, or, when that is None, on the
    first ``calib_batches`` of ``batches``, which are then left out of the evaluation (for every
    datapath, so all are judged on the same inputs). At most ``max_batches`` are evaluated.
    ``options`` are ``EmulateOptions``.
    """
    if model.training:
        raise EmulateError("model: it is in training mode; call model.eval() first (the float32 "
                           "comparison needs deterministic forwards)")
    backend = config if isinstance(config, Backend) else \
        Backend.from_config(config, EmulateOptions.build(**options).exact)
    total = len(batches) if hasattr(batches, "__len__") else None
    held_out = calib_data is not None
    batches = iter(batches)
    calib = list(islice(calib_data if held_out else batches, calib_batches))
    if backend.datapath == "int":   # also per_token: replaces an earlier calibration (its smoothing) of model
        calibrate(model, backend, (_split(b)[0] for b in calib), method=calib_method, smooth=smooth,
                  progress=progress, **{k: v for k, v in options.items() if k in ("ops", "skip")})
    if total is not None and not held_out:
        total -= len(calib)
    total = max_batches if total is None else min(total, max_batches or total)
    labels, count = [], 0
    with torch.no_grad(), emulate(model, backend, **options) as run:
        for batch in tqdm(islice(batches, max_batches), desc=f"emulate {backend.name}", disable=not progress,
                          total=total):
            inputs, y = _split(batch)
            call_model(model, inputs)
            count += 1
            if y is not None:
                labels.append(y)
    if count == 0:
        raise EmulateError(f"batches: none left to evaluate after the {len(calib)} calibration batch(es) "
                           f"(calib_batches={calib_batches}); calibration and evaluation data are held apart: "
                           "give more batches, fewer calibration batches or separate calib_data")
    return run.report(labels=labels or None)
