"""Activation ranges for integer datapaths, measured on a few batches of the float32 model.

``calibrate(model, config, batches)`` runs the model natively, sees the operands of every
product the emulator will compute (same names, same decomposition) and records, per product,
the range of the activation ``a`` and of ``b`` when ``b`` is an activation too (attention);
weights get per-output-channel scales from themselves. Methods: ``max`` (largest magnitude)
and ``percentile`` (that percentile of the magnitudes, clipping rare outliers). The result is
kept for ``model`` (nothing is written into the model) and used by ``emulate``/``convert``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
from torch import Tensor
from tqdm.auto import tqdm

from vitaccel.emulate._registry import CALIBRATIONS, converted
from vitaccel.emulate.backend import Backend, resolve_config
from vitaccel.emulate.capture import Capture, OpCall, no_capturable_op
from vitaccel.emulate.options import EmulateOptions
from vitaccel.errors import EmulateError

METHODS = ("max", "percentile")
_SAMPLES_PER_CALL = 1 << 16   # magnitudes kept per operand and call for the percentile method
_MAX_SAMPLES = 1 << 24        # torch.quantile's input limit


@dataclass
class Calibration:
    """Per-product operand ranges: ``ranges[product name][operand]`` with operand "a" or "b"."""

    method: str
    percentile: float
    ranges: dict[str, dict[str, float]] = field(default_factory=dict)

    def scale(self, name: str, operand: str, qmax: int) -> Tensor:
        """The per-tensor scale ``range / qmax`` (0-d float32) of ``operand`` of product ``name``."""
        try:
            value = self.ranges[name][operand]
        except KeyError:
            raise EmulateError(f"op {name!r}: no calibrated range for operand {operand!r}; the calibration "
                               f"batches did not run this op -- calibrate with inputs like the ones you "
                               f"emulate") from None
        return torch.tensor(max(value, torch.finfo(torch.float32).tiny) / qmax, dtype=torch.float32)


def calibration_of(model: nn.Module) -> Calibration | None:
    """The calibration ``calibrate`` last computed for ``model``, if any."""
    return CALIBRATIONS.get(model)


def call_model(model: nn.Module, batch: Any) -> Any:
    """Call ``model`` on a batch: a tensor, a tuple/list of positional arguments or a dict of keyword arguments."""
    if isinstance(batch, Tensor):
        return model(batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    if isinstance(batch, dict):
        return model(**batch)
    raise TypeError(f"batch: expected a tensor, a tuple of positional arguments or a dict of keyword "
                    f"arguments, got {type(batch).__name__}")


class _Recorder:
    """The calibration engine: runs each product in float32 and records its operands' ranges."""

    def __init__(self, options: EmulateOptions, method: str, generator: torch.Generator) -> None:
        self.options, self.method, self.generator = options, method, generator
        self.maxima: dict[tuple[str, str], float] = {}
        self.samples: dict[tuple[str, str], list[Tensor]] = {}
        self.ops_seen = 0

    def run_op(self, name: str, call: OpCall, native: Callable[[], Tensor]) -> Tensor:
        self.ops_seen += 1
        if self.options.native_reason(call.kind, name, call.operands):
            return native()
        return call.decomposed(partial(self._product, name))

    def unsupported(self, name: str, func_name: str, native: Callable[[], Any]) -> Any:
        self.ops_seen += 1
        return native()

    def forward_done(self, *args: Any) -> None:
        pass

    def _product(self, op: str, role: str, a: Tensor, b: Tensor, b_is_weight: bool) -> Tensor:
        name = f"{op}.{role}" if role else op
        self._observe(name, "a", a)
        if not b_is_weight:
            self._observe(name, "b", b)
        return torch.matmul(a, b)

    def _observe(self, name: str, operand: str, x: Tensor) -> None:
        mag = x.detach().abs().flatten()
        key = (name, operand)
        if mag.numel() == 0:
            return
        if not torch.isfinite(mag).all():  # max(0.0, nan) would record a range of 0 without a word
            raise EmulateError(f"batches: op {name!r} saw NaN or inf in operand {operand!r} during calibration; "
                               "calibrate on finite inputs (check the data and the float32 model)")
        if self.method == "max":
            self.maxima[key] = max(self.maxima.get(key, 0.0), mag.max().item())
            return
        if mag.numel() > _SAMPLES_PER_CALL:
            mag = mag[torch.randint(mag.numel(), (_SAMPLES_PER_CALL,), generator=self.generator)]
        self.samples.setdefault(key, []).append(mag)

    def ranges(self, percentile: float) -> dict[str, dict[str, float]]:
        values = dict(self.maxima)
        for key, parts in self.samples.items():
            mags = torch.cat(parts)
            if mags.numel() > _MAX_SAMPLES:
                mags = mags[torch.randint(mags.numel(), (_MAX_SAMPLES,), generator=self.generator)]
            values[key] = torch.quantile(mags, percentile / 100.0).item()
        out: dict[str, dict[str, float]] = {}
        for (name, operand), value in values.items():
            out.setdefault(name, {})[operand] = value
        return out


def calibrate(model: nn.Module, config: Any, batches: Iterable[Any], *, method: str = "max",
              percentile: float = 99.99, progress: bool = False, seed: int = 0,
              **options: Any) -> Calibration:
    """Measure activation ranges of ``model`` on ``batches`` for ``config`` and keep them for ``model``.

    ``batches`` yields model inputs (tensor, tuple of positional args or dict of kwargs); ``method``
    is "max" or "percentile" (of the magnitudes, ``percentile`` in (0, 100]). ``options`` are the
    ``EmulateOptions`` the model will be emulated with (``ops``/``skip`` decide what is measured).
    The model runs in float32 under ``torch.no_grad()``; its parameters and modules are not changed.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, Backend):
        resolve_config(config)  # a config that does not load is an error before anything runs
    if method not in METHODS:
        raise EmulateError(f"method: {method!r} is not allowed; choose one of {list(METHODS)}")
    if not 0.0 < percentile <= 100.0:
        raise EmulateError(f"percentile: {percentile!r} is not allowed; it must be in (0, 100]")
    if converted(model):
        raise EmulateError("model: it is converted to run emulated; restore(model) before calibrating it")
    recorder = _Recorder(EmulateOptions.build(**options), method, torch.Generator().manual_seed(seed))
    capture = Capture(model, recorder)
    capture.attach()
    count = 0
    try:
        with torch.no_grad():
            for batch in tqdm(batches, desc="calibrate", disable=not progress):
                call_model(model, batch)
                count += 1
    finally:
        capture.detach()
    if count == 0:
        raise EmulateError("batches: no batch given; calibration needs at least one")
    if recorder.ops_seen == 0:
        raise no_capturable_op(type(model).__name__)
    calibration = Calibration(method, percentile, recorder.ranges(percentile))
    CALIBRATIONS[model] = calibration
    return calibration
