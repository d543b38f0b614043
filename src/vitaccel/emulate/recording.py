"""Record the operand codes a config's datapath would see in a real model forward, a bounded sample
per op, while the model runs native (an ``Engine`` of ``capture.py``).

Every matrix product of a captured op (``ops`` writes each op as products ``a @ b``) is sampled:
``rows`` groups of G consecutive K elements, taken output by output (seeded random outputs, every
group of each in K order, as the adder tree takes them), K zero-padded to a multiple of G. The
codes are what the lanes' ports take: quantised integers for an int config (weights one scale per
output channel; activations one per tensor, the scale of max calibration on this batch, or with
``activation_scale: per_token`` one per row, and an activation second operand one per column, as
``emulated_matmul`` scales them), the format's bit patterns for a float config. The drive for
``hw.energy.group_energies``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from vitaccel.arith import AcceleratorConfig, FloatFormat
from vitaccel.arith.intpath import finite_abs_max, quantize_int, quantize_with_scale, scale_from_max
from vitaccel.arith.mx import MX_NAMES
from vitaccel.emulate.capture import Capture, OpCall
from vitaccel.errors import EmulateError


@dataclass
class Recorder:
    """An ``Engine`` that records at most ``rows`` groups per product and returns native results."""

    config: AcceleratorConfig
    rows: int = 64
    seed: int = 0
    a: dict[str, np.ndarray] = field(default_factory=dict)    # product name -> (rows, G) codes
    b: dict[str, np.ndarray] = field(default_factory=dict)
    first: dict[str, np.ndarray] = field(default_factory=dict)   # product name -> (rows,) starts a dot product
    skipped: list[str] = field(default_factory=list)           # ops with no emulation (run native, not recorded)

    def __post_init__(self) -> None:
        if self.config.datapath not in ("int", "float"):
            raise EmulateError(f"config {self.config.name!r}: datapath {self.config.datapath!r} has no operand "
                               "codes to record; choose an int or float config")
        dp = self.config.int_datapath if self.config.datapath == "int" else self.config.float_datapath
        for side in ("a_format", "b_format") if self.config.datapath == "float" else ():
            if getattr(dp, side) in MX_NAMES:
                raise EmulateError(f"float_datapath.{side}: value {getattr(dp, side)!r} is not allowed for recording "
                                   "lane codes; recording takes no block scale codes (the MX dot units do: "
                                   "hw.simulate); choose a float format")
        self.group = dp.group_size
        self._rng = np.random.default_rng(self.seed)
        self._seen: set[str] = set()

    def run_op(self, name: str, call: OpCall, native: Callable[[], Tensor]) -> Tensor:
        """Record the op's products (first call of each name only), then run it native."""
        if name not in self._seen:
            self._seen.add(name)
            with torch.no_grad():
                call.decomposed(lambda role, a, b, w: self._record(f"{name}.{role}" if role else name, a, b, w))
        return native()

    def unsupported(self, name: str, func_name: str, native: Callable[[], Any]) -> Any:
        """Not recorded; runs native."""
        self.skipped.append(name)
        return native()

    def forward_done(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        """Nothing to check."""

    def operands(self) -> tuple[np.ndarray, np.ndarray]:
        """Every product's rows, one after another: ``(a, b)`` of shape (rows x products, G)."""
        if not self.a:
            raise EmulateError("recording: no matrix product was recorded (run a forward inside record())")
        return np.concatenate(list(self.a.values())), np.concatenate(list(self.b.values()))

    def firsts(self) -> np.ndarray:
        """Per row of ``operands``: whether it is the first group of its output's dot product (the
        accumulator starts from 0 there), as the accumulator takes them."""
        if not self.first:
            raise EmulateError("recording: no matrix product was recorded (run a forward inside record())")
        return np.concatenate(list(self.first.values()))

    def _record(self, name: str, a: Tensor, b: Tensor, b_is_weight: bool) -> Tensor:
        qa, qb = self._codes(a, "a", False), self._codes(b, "b", b_is_weight)
        k, g = a.shape[-1], self.group
        qa = qa.reshape(-1, *qa.shape[-2:])
        qb = qb.expand(*a.shape[:-2], *qb.shape[-2:]).reshape(-1, *qb.shape[-2:])
        groups = math.ceil(k / g)
        pad = groups * g - k
        outputs = math.ceil(self.rows / groups)
        batch = self._rng.integers(0, qa.shape[0], outputs)
        i = self._rng.integers(0, qa.shape[1], outputs)
        j = self._rng.integers(0, qb.shape[2], outputs)
        rows_a = np.pad(qa[batch, i, :].numpy(), ((0, 0), (0, pad))).reshape(-1, g)[:self.rows]
        rows_b = np.pad(qb[batch, :, j].numpy(), ((0, 0), (0, pad))).reshape(-1, g)[:self.rows]
        self.a[name], self.b[name] = rows_a.astype(np.int64), rows_b.astype(np.int64)
        self.first[name] = (np.arange(len(rows_a)) % groups) == 0
        return a @ b

    def _codes(self, x: Tensor, which: str, per_channel: bool) -> Tensor:
        """The lane port codes of one operand (int64)."""
        x = x.detach().float()
        if self.config.datapath == "int":
            dp = self.config.int_datapath
            bits = dp.a_bits if which == "a" else dp.b_bits
            if dp.activation_scale == "per_token" and not per_channel:   # a per row, b per column
                scale = scale_from_max(finite_abs_max(x, which, dim=-1 if which == "a" else -2), bits)
                return quantize_with_scale(x, scale, bits).long()
            return quantize_int(x, bits, axis=-1 if per_channel else None, name=which)[0].long()
        fp = self.config.float_datapath
        fmt = FloatFormat.named(fp.a_format if which == "a" else fp.b_format)
        return fmt.encode(x, fp.operand_rounding).long() & (2 ** fmt.bits - 1)


@torch.no_grad()
def record(model: nn.Module, x: Tensor, config: AcceleratorConfig | str, *, rows: int = 64,
           seed: int = 0) -> Recorder:
    """Run ``model(x)`` native and record ``rows`` groups of operand codes per matrix product."""
    recorder = Recorder(AcceleratorConfig.load(config), rows, seed)
    capture = Capture(model, recorder)
    capture.attach()
    try:
        model(x)
    finally:
        capture.detach()
    return recorder


__all__ = ["Recorder", "record"]
