"""Run a model on the emulated accelerator: ``convert``/``restore`` and the ``emulate`` context.

``convert`` attaches a ``Capture`` (hooks only: no parameter, buffer or module of the model is
replaced), so ``restore`` leaves the model exactly as it was. The ``EmulationRun`` it returns is
the capture's engine: it decides per op whether it runs emulated, computes each product with the
backend, measures it against float32 and, after each forward, compares the model output with the
float32 model's on the same inputs.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from vitaccel.emulate._registry import RUNS, converted
from vitaccel.emulate.backend import Backend
from vitaccel.emulate.calibration import Calibration, alpha_of, calibration_of
from vitaccel.emulate.capture import Capture, OpCall, no_capturable_op
from vitaccel.emulate.grad import no_gradient, straight_through
from vitaccel.emulate.options import EmulateOptions
from vitaccel.emulate.report import NativeRow, OpRow, Report
from vitaccel.emulate.tensor_error import TensorError
from vitaccel.errors import EmulateError


@dataclass
class _OpRecord:
    kind: str
    shape: str = ""
    calls: int = 0
    errors: TensorError = field(default_factory=TensorError)
    tier: tuple[str, bool] = ("native", False)  # (tier name, bit-exact) of an emulated product
    reason: str = ""                            # why it ran native (native records only)
    scales: str | None = None                   # how the operands were scaled (emulated records)


def _shape(*tensors: Tensor, sep: str = " @ ") -> str:
    return sep.join("x".join(map(str, t.shape)) for t in tensors)


def _primary(output: Any) -> Tensor | None:
    """The tensor a model output is judged by: itself, ``logits``, or the first tensor inside."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, dict):
        if isinstance(output.get("logits"), Tensor):
            return output["logits"]
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            found = _primary(item)
            if found is not None:
                return found
    return None


class EmulationRun:
    """A model converted to run on the emulated accelerator; ``report()`` says what happened."""

    def __init__(self, model: nn.Module, backend: Backend, options: EmulateOptions,
                 calibration: Calibration | None) -> None:
        self.model, self.backend, self.options, self.calibration = model, backend, options, calibration
        self._capture = Capture(model, self)
        self._ops: dict[str, _OpRecord] = {}
        self._native: dict[str, _OpRecord] = {}
        self._output = TensorError()
        self._forwards = 0
        self._predictions: list[Tensor] = []
        self._reference_predictions: list[Tensor] = []
        self._ops_in_forward = 0
        self._warned: set[str] = set()
        self._scales: dict[tuple[str, str], Tensor] = {}

    # -- life cycle ------------------------------------------------------------------------
    def attach(self) -> None:
        self._capture.attach()

    def detach(self) -> None:
        self._capture.detach()

    def reset(self) -> None:
        """Forget everything recorded so far (ops, output comparisons, predictions)."""
        self._ops.clear()
        self._native.clear()
        self._output, self._forwards = TensorError(), 0
        self._predictions.clear()
        self._reference_predictions.clear()

    # -- the engine the capture calls ----------------------------------------------------
    def run_op(self, name: str, call: OpCall, native: Callable[[], Tensor]) -> Tensor:
        self._ops_in_forward += 1
        reason = self.options.native_reason(call.kind, name, call.operands)
        if reason is not None:
            self._note_native(name, call.kind, _shape(*call.operands, sep=", "), reason)
            return native()
        if self.backend.datapath == "native":
            self._record(name, call.kind, _shape(*call.operands, sep=", "), call.operands[0].shape[-1])
            return native()
        return call.decomposed(partial(self._product, name, call.kind))

    def unsupported(self, name: str, func_name: str, native: Callable[[], Any]) -> Any:
        self._ops_in_forward += 1
        self._note_native(name, func_name, "", f"no emulation for {func_name}")
        if func_name not in self._warned:
            self._warned.add(func_name)
            warnings.warn(f"vitaccel.emulate: {func_name} (op {name}) has no emulation and runs native "
                          f"float32; it is listed in the report", stacklevel=2)
        return native()

    def forward_done(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        """After the outermost module call; for the model itself (not a submodule called on its own):
        check something ran emulated, and compare the output with the float32 model's."""
        ran_none, self._ops_in_forward = self._ops_in_forward == 0, 0
        if module is not self.model:
            return
        if ran_none:
            restore(self.model)
            raise no_capturable_op(type(module).__name__)
        out = _primary(output)
        if not self.options.stats or module.training or out is None:
            return
        with self._capture.suspend(), torch.no_grad():
            ref = _primary(module(*args, **kwargs))
        self._output.update(out, ref)
        self._forwards += 1
        if out.dim() == 2:
            self._predictions.append(out.detach().argmax(-1))
            self._reference_predictions.append(ref.argmax(-1))

    # -- products ----------------------------------------------------------------------------
    def _product(self, op: str, kind: str, role: str, a: Tensor, b: Tensor, b_is_weight: bool) -> Tensor:
        name = f"{op}.{role}" if role else op
        rec = self._record(name, kind, _shape(a, b), a.shape[-1])
        a_scale, b_scale = self._operand_scales(name, b_is_weight)
        factors = self._smooth_factors(name, b, b_is_weight)
        qa, qb = (a, b) if factors is None else (a / factors, b * factors[:, None])
        if rec.scales is None:
            rec.scales = self._describe_scales(name, b_is_weight, factors is not None)
        with torch.no_grad():
            out = self.backend.matmul(qa.detach(), qb.detach(), a_scale=a_scale, b_scale=b_scale)
        wants_grad = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
        ste = wants_grad and self.options.grad == "ste"
        if self.options.stats or ste:
            with torch.set_grad_enabled(ste):
                ref = torch.matmul(a, b)
            if self.options.stats:
                rec.errors.update(out, ref)
            if ste:
                return straight_through(out, ref)
        return no_gradient(out, a, b) if wants_grad else out

    def _smooth_factors(self, name: str, b: Tensor, b_is_weight: bool) -> Tensor | None:
        """SmoothQuant factors of a product with a 2-D weight, when the calibration has them."""
        if self.calibration is None or not b_is_weight or b.dim() != 2:
            return None
        return self.calibration.smooth_factors(name)

    def _describe_scales(self, name: str, b_is_weight: bool, smoothed: bool) -> str:
        """How the product's operands are scaled, for the report."""
        if self.backend.datapath != "int":
            return ""
        if self.backend.activation_scale == "per_token":
            a, b = "a per-token dynamic", "b per-column dynamic"
        else:
            a, b = f"a per-tensor {self.calibration.method}", f"b per-tensor {self.calibration.method}"
        text = f"{a}, {'w per-channel' if b_is_weight else b}"
        return text + (f", smooth {alpha_of(self.calibration.smooth, name)}" if smoothed else "")

    def _operand_scales(self, name: str, b_is_weight: bool) -> tuple[Tensor | None, Tensor | None]:
        if self.backend.datapath != "int" or self.backend.activation_scale == "per_token":
            return None, None
        a_scale = self._scale(name, "a")
        return a_scale, None if b_is_weight else self._scale(name, "b")

    def _scale(self, name: str, operand: str) -> Tensor:
        key = (name, operand)
        if key not in self._scales:
            self._scales[key] = self.calibration.scale(name, operand, self.backend.qmax)
        return self._scales[key]

    # -- records -------------------------------------------------------------------------------
    def _record(self, name: str, kind: str, shape: str, k: int) -> _OpRecord:
        rec = self._ops.get(name)
        if rec is None:
            rec = self._ops[name] = _OpRecord(kind, tier=self.backend.tier(k))
        rec.shape, rec.calls = shape, rec.calls + 1
        return rec

    def _note_native(self, name: str, kind: str, shape: str, reason: str) -> None:
        rec = self._native.setdefault(name, _OpRecord(kind))
        rec.shape, rec.calls, rec.reason = shape, rec.calls + 1, reason

    def report(self, labels: Tensor | Sequence[Tensor] | None = None) -> Report:
        """The report so far; ``labels`` (all forwards' labels, in order) add top-1 accuracy."""
        measured = self.options.stats or self.backend.datapath == "native"  # native ops: no error
        rows = [OpRow(name, r.kind, r.shape, r.calls, *r.tier,
                      (r.errors.sqnr_db if measured else None), (r.errors.max_rel_err if measured else None),
                      r.scales or "")
                for name, r in self._ops.items()]
        native = [NativeRow(name, r.kind, r.shape, r.calls, r.reason) for name, r in self._native.items()]
        report = Report(self.backend.name, ", ".join(sorted({r.tier for r in rows})),
                        bool(rows) and all(r.exact for r in rows), rows, native, self._forwards)
        if self._forwards:
            report.output_sqnr_db, report.output_max_rel_err = self._output.sqnr_db, self._output.max_rel_err
        if labels is not None:
            self._add_accuracy(report, labels)
        return report

    def _add_accuracy(self, report: Report, labels: Tensor | Sequence[Tensor]) -> None:
        labels = torch.cat(list(labels)) if not isinstance(labels, Tensor) else labels
        if not self._predictions:
            raise EmulateError("labels: no classifier output (N, classes) was compared with float32 in eval "
                               "mode, so there is no accuracy to compute")
        pred, ref = torch.cat(self._predictions), torch.cat(self._reference_predictions)
        if labels.shape != pred.shape:
            raise EmulateError(f"labels: shape {tuple(labels.shape)} does not match the {len(pred)} "
                               f"predictions recorded")
        report.accuracy = (pred == labels).float().mean().item()
        report.reference_accuracy = (ref == labels).float().mean().item()
        report.agreement = (pred == ref).float().mean().item()


def convert(model: nn.Module, config: Any, *, calibration: Calibration | None = None,
            **options: Any) -> EmulationRun:
    """Make ``model`` run on the emulated accelerator until ``restore(model)``.

    ``config``: an ``AcceleratorConfig``, a preset name, a YAML path or a ``Backend``.
    ``options``: ``EmulateOptions`` (``exact``, ``ops``, ``skip``, ``grad``, ``stats``). Integer
    configs with per_tensor activation scales need ``calibration`` (default: the one ``calibrate``
    last computed for ``model``); per_token ones use it only for SmoothQuant factors.
    Every check happens before the model is touched, so an error leaves it unchanged. With
    ``stats=True`` (default) each eval-mode forward also runs the float32 model once on the same
    inputs, for the output comparison: your own forward hooks see that pass too.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if converted(model):
        raise EmulateError("model: it is already converted; restore(model) first")
    opts = EmulateOptions.build(**options)
    backend = config if isinstance(config, Backend) else Backend.from_config(config, opts.exact)
    calibration = calibration if calibration is not None else calibration_of(model)
    if backend.datapath == "int" and backend.activation_scale == "per_tensor" and calibration is None:
        raise EmulateError(f"config: {backend.name!r} has an integer datapath with per_tensor activation scales, "
                           f"which need calibrating: run vitaccel.emulate.calibrate(model, config, batches) "
                           f"first (or use per_token scales, e.g. the int8-dyn preset)")
    run = EmulationRun(model, backend, opts, calibration)
    run.attach()
    RUNS[model] = run
    return run


def restore(model: nn.Module) -> nn.Module:
    """Undo ``convert``: the model runs native float32 again, exactly as before."""
    run = RUNS.pop(model, None)
    if run is None:
        raise EmulateError("model: it is not converted (convert(model, config) or emulate(model, config) first)")
    run.detach()
    return model


@contextlib.contextmanager
def emulate(model: nn.Module, config: Any, *, calibration: Calibration | None = None,
            **options: Any) -> Iterator[EmulationRun]:
    """``with emulate(model, config) as run: model(x)``; the model is restored on exit."""
    run = convert(model, config, calibration=calibration, **options)
    try:
        yield run
    finally:
        if RUNS.get(model) is run:
            restore(model)
