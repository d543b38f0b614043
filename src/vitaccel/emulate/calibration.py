"""Activation ranges for integer datapaths, measured on a few batches of the float32 model.

``calibrate(model, config, batches)`` runs the model natively, sees the operands of every
product the emulator will compute (same names, same decomposition) and records, per product,
the range of the activation ``a`` and of ``b`` when ``b`` is an activation too (attention);
weights get per-output-channel scales from themselves. Methods: ``max`` (largest magnitude),
``percentile`` (that percentile of the magnitudes, clipping rare outliers) and ``mse`` (the
clipping range that minimises the squared quantisation error of the observed values, through
the datapath's own quantiser and leading-one truncation). Datapaths with per_token activation
scales need no ranges (each row is scaled on the fly).

``smooth=alpha`` (SmoothQuant, DESIGN.md section 8): for each product with a 2-D weight, factors
``s_k = max|a_k|^alpha / max|w_k|^(1-alpha)`` per input channel k (1 where either maximum is 0)
divide the activation and multiply the weight's row k before quantisation (``a @ w`` is
unchanged in real arithmetic); the ranges are then measured on ``a / s``, so the batches run
twice. The result is kept for ``model`` (nothing is written into the model) and used by
``emulate``/``convert``.
"""

from __future__ import annotations

import fnmatch
import math
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

METHODS = ("max", "percentile", "mse")
_SAMPLES_PER_CALL = 1 << 16   # magnitudes kept per operand and call for the percentile and mse methods
_MAX_SAMPLES = 1 << 24        # torch.quantile's input limit
_MSE_SAMPLES = 1 << 18        # magnitudes the mse search scores each candidate range on
_MSE_CANDIDATES = 100         # candidate ranges max * i / 100, i = 1..100
Quantiser = Callable[[Tensor, Tensor], Tensor]   # (x, scale) -> x as the datapath quantises it


def alpha_of(smooth: float | dict[str, float] | None, name: str) -> float | None:
    """The SmoothQuant alpha of product ``name``: one for every product, or the first fnmatch
    pattern of a dict that matches (None: not smoothed)."""
    if smooth is None or not isinstance(smooth, dict):
        return smooth
    return next((alpha for pattern, alpha in smooth.items() if fnmatch.fnmatchcase(name, pattern)), None)


def _check_smooth(smooth: object) -> None:
    items = smooth.items() if isinstance(smooth, dict) else [(None, smooth)]
    for pattern, alpha in items:
        key = "smooth" if pattern is None else f"smooth[{pattern!r}]"
        if pattern is not None and not isinstance(pattern, str):
            raise EmulateError(f"smooth: key {pattern!r} is not allowed; keys are fnmatch patterns of op names")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise EmulateError(f"{key}: alpha {alpha!r} is not allowed; a number in [0, 1] is required "
                               "(or smooth=None for no migration)")


@dataclass
class Calibration:
    """Per-product operand ranges: ``ranges[product name][operand]`` with operand "a" or "b"."""

    method: str
    percentile: float
    ranges: dict[str, dict[str, float]] = field(default_factory=dict)
    smooth: float | dict[str, float] | None = None    # the alpha(s) asked for
    factors: dict[str, Tensor] = field(default_factory=dict)   # SmoothQuant s per product, shape (K,)

    def smooth_factors(self, name: str) -> Tensor | None:
        """The SmoothQuant factors of product ``name`` (None where it is not smoothed)."""
        if alpha_of(self.smooth, name) is None:
            return None
        if name not in self.factors:
            raise EmulateError(f"op {name!r}: smooth={self.smooth!r} applies to it but the calibration batches "
                               "did not run this op, so it has no smoothing factors -- calibrate with inputs "
                               "like the ones you emulate")
        return self.factors[name]

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

    def __init__(self, options: EmulateOptions, method: str, generator: torch.Generator,
                 quantisers: dict[str, tuple[int, Quantiser]], ranges: bool,
                 smooth: float | dict[str, float] | None) -> None:
        self.options, self.method, self.generator = options, method, generator
        self.quantisers, self.record_ranges, self.smooth = quantisers, ranges, smooth
        self.maxima: dict[tuple[str, str], float] = {}
        self.samples: dict[tuple[str, str], list[Tensor]] = {}
        self.channel_maxima: dict[str, tuple[Tensor, Tensor]] = {}  # smoothing pass: max|a_k|, max|w_k|
        self.factors: dict[str, Tensor] | None = None               # set after the smoothing pass
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
        smoothed = b_is_weight and b.dim() == 2 and alpha_of(self.smooth, name) is not None
        if self.factors is None and smoothed:
            self._observe_channels(name, a, b)
        elif self.factors is not None:
            self._observe(name, "a", a / self.factors[name] if name in self.factors else a)
            if not b_is_weight:
                self._observe(name, "b", b)
        return torch.matmul(a, b)

    def _observe_channels(self, name: str, a: Tensor, b: Tensor) -> None:
        _check_finite(name, "a", a)
        a_max = a.detach().abs().reshape(-1, a.shape[-1]).amax(0) if a.numel() else torch.zeros(a.shape[-1])
        if name in self.channel_maxima:
            a_max = torch.maximum(a_max, self.channel_maxima[name][0])
        self.channel_maxima[name] = (a_max, b.detach().abs().amax(-1))

    def smoothing_factors(self) -> dict[str, Tensor]:
        """``s_k = max|a_k|^alpha / max|w_k|^(1-alpha)`` per smoothed product (1 where a maximum is 0)."""
        out = {}
        for name, (a_max, w_max) in self.channel_maxima.items():
            alpha = alpha_of(self.smooth, name)
            s = a_max.double() ** alpha / w_max.double() ** (1.0 - alpha)
            ok = (a_max > 0) & (w_max > 0) & torch.isfinite(s) & (s > 0)
            out[name] = torch.where(ok, s, torch.ones_like(s)).float()
        return out

    def _observe(self, name: str, operand: str, x: Tensor) -> None:
        _check_finite(name, operand, x)
        if not self.record_ranges:
            return
        mag = x.detach().abs().flatten()
        key = (name, operand)
        if mag.numel() == 0:
            return
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
            if self.method == "percentile":
                values[key] = torch.quantile(mags, percentile / 100.0).item()
            else:
                values[key] = _mse_range(mags, *self.quantisers[key[1]], self.generator)
        out: dict[str, dict[str, float]] = {}
        for (name, operand), value in values.items():
            out.setdefault(name, {})[operand] = value
        return out


def _check_finite(name: str, operand: str, x: Tensor) -> None:
    if x.numel() and not bool(torch.isfinite(x).all()):  # max(0.0, nan) would record a range of 0 in silence
        raise EmulateError(f"batches: op {name!r} saw NaN or inf in operand {operand!r} during calibration; "
                           "calibrate on finite inputs (check the data and the float32 model)")


def _quantisers(config: Any) -> tuple[dict[str, tuple[int, Quantiser]], bool]:
    """Per operand, its qmax and ``q(x, scale) -> dequantised x`` as the datapath quantises (with
    leading-one truncation of "a"), and whether the datapath uses calibrated ranges (per_tensor)."""
    from vitaccel.arith import intpath

    if isinstance(config, Backend):
        bits = {"a": (config.qmax or 127).bit_length() + 1}
        bits["b"] = bits["a"]
        table, per_tensor = None, config.activation_scale == "per_tensor"
    else:
        config = resolve_config(config)
        dp = config.int_datapath
        if dp is None:
            bits, table, per_tensor = {"a": 8, "b": 8}, None, True
        else:
            bits, per_tensor = {"a": dp.a_bits, "b": dp.b_bits}, dp.activation_scale == "per_tensor"
            table = None if dp.keep_bits is None else intpath.truncation_table(dp.a_bits, dp.keep_bits,
                                                                               dp.keep_rounding)

    def quantiser(operand: str) -> tuple[int, Quantiser]:
        def q(x: Tensor, scale: Tensor) -> Tensor:
            v = intpath.quantize_with_scale(x, scale, bits[operand], torch.float32)
            if table is not None and operand == "a":
                v = table[v.long() + intpath.qmax(bits[operand])]
            return v * scale
        return intpath.qmax(bits[operand]), q

    return {"a": quantiser("a"), "b": quantiser("b")}, per_tensor


def _mse_range(mags: Tensor, qmax: int, quantise: Quantiser, generator: torch.Generator) -> float:
    """The range ``max * i / 100`` (i = 1..100) whose quantiser (scale range / qmax) has the least
    squared error on ``mags``."""
    top = float(mags.max())
    if top == 0.0:
        return 0.0
    if mags.numel() > _MSE_SAMPLES:
        mags = torch.cat([mags[torch.randint(mags.numel(), (_MSE_SAMPLES - 1,), generator=generator)],
                          mags.new_tensor([top])])
    best, best_err = top, math.inf
    for i in range(1, _MSE_CANDIDATES + 1):
        c = top * i / _MSE_CANDIDATES
        scale = torch.tensor(c / qmax, dtype=torch.float32)
        err = float((quantise(mags, scale) - mags).double().square().sum())
        if err < best_err:
            best, best_err = c, err
    return best


def calibrate(model: nn.Module, config: Any, batches: Iterable[Any], *, method: str = "max",
              percentile: float = 99.99, smooth: float | dict[str, float] | None = None,
              progress: bool = False, seed: int = 0, **options: Any) -> Calibration:
    """Measure activation ranges of ``model`` on ``batches`` for ``config`` and keep them for ``model``.

    ``batches`` yields model inputs (tensor, tuple of positional args or dict of kwargs); ``method``
    is "max", "percentile" (of the magnitudes, ``percentile`` in (0, 100]) or "mse" (module
    docstring). ``smooth``: None, a SmoothQuant alpha in [0, 1] for every product with a weight,
    or a dict of fnmatch patterns of product names to alphas (first match; unmatched: none).
    ``options`` are the ``EmulateOptions`` the model will be emulated with (``ops``/``skip``
    decide what is measured). The model runs in float32 under ``torch.no_grad()``; its parameters
    and modules are not changed. Calibrate on inputs held apart from those you evaluate on.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, Backend):
        resolve_config(config)  # a config that does not load is an error before anything runs
    if method not in METHODS:
        raise EmulateError(f"method: {method!r} is not allowed; choose one of {list(METHODS)}")
    if not 0.0 < percentile <= 100.0:
        raise EmulateError(f"percentile: {percentile!r} is not allowed; it must be in (0, 100]")
    if smooth is not None:
        _check_smooth(smooth)
    if converted(model):
        raise EmulateError("model: it is converted to run emulated; restore(model) before calibrating it")
    quantisers, per_tensor = _quantisers(config)
    recorder = _Recorder(EmulateOptions.build(**options), method, torch.Generator().manual_seed(seed),
                         quantisers, per_tensor, smooth)
    batches = list(batches) if smooth is not None else batches   # two passes
    if smooth is not None:
        _run(model, recorder, batches, progress, "smooth")
        recorder.factors, recorder.ops_seen = recorder.smoothing_factors(), 0
    else:
        recorder.factors = {}
    _run(model, recorder, batches, progress, "calibrate")
    calibration = Calibration(method, percentile, recorder.ranges(percentile), smooth, recorder.factors)
    CALIBRATIONS[model] = calibration
    return calibration


def _run(model: nn.Module, recorder: _Recorder, batches: Iterable[Any], progress: bool, desc: str) -> None:
    """One pass of the float32 model over ``batches`` with ``recorder`` seeing every product."""
    capture = Capture(model, recorder)
    capture.attach()
    count = 0
    try:
        with torch.no_grad():
            for batch in tqdm(batches, desc=desc, disable=not progress):
                call_model(model, batch)
                count += 1
    finally:
        capture.detach()
    if count == 0:
        raise EmulateError("batches: no batch given; calibration needs at least one")
    if recorder.ops_seen == 0:
        raise no_capturable_op(type(model).__name__)
