"""Find every matrix product a model runs, name it, and hand it to an engine.

A ``TorchFunctionMode`` sees each call of ``F.linear``, ``F.conv2d``, ``torch.matmul`` (and
``mm``, ``bmm``, ``@``) and ``F.scaled_dot_product_attention`` -- also inside code vitaccel did
not write (timm, torchvision, Hugging Face). Forward hooks on every module keep a stack of
module names, so each op gets a stable name such as ``blocks.0.attn.qkv`` (the op of an
``nn.Linear``/``nn.Conv2d``) or ``blocks.0.attn.sdpa0`` (a functional op, numbered per forward
of its module), and switch the mode on for the outermost module call. Nothing in the model is
modified: ``detach`` removes the hooks and the model is as before.

Torch function modes are per thread, so a capture serves one forward at a time: a forward that
starts in another thread while one runs is refused with an ``EmulateError`` (never run native in
silence); use one converted copy of the model per thread.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from vitaccel.emulate import ops
from vitaccel.errors import EmulateError

# Functions that are matrix products but have no emulation: they run native and are listed.
UNSUPPORTED = frozenset({
    "addmm", "addmv", "addbmm", "baddbmm", "addr", "mv", "dot", "vdot", "inner", "outer", "ger",
    "einsum", "tensordot", "bilinear", "chain_matmul", "multi_dot", "conv1d", "conv3d",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "conv_tbc", "convolution",
    "multi_head_attention_forward", "_native_multi_head_attention",
})

_KINDS: dict[Callable, str] = {
    F.linear: "linear", F.conv2d: "conv2d", F.scaled_dot_product_attention: "attention",
    **{fn: "matmul" for fn in (torch.matmul, Tensor.matmul, Tensor.__matmul__, Tensor.__rmatmul__,
                               torch.mm, Tensor.mm, torch.bmm, Tensor.bmm)},
}
_OWNERS: dict[str, type] = {"linear": nn.Linear, "conv2d": nn.Conv2d}
_STEMS = {"attention": "sdpa"}  # how functional ops are named: blocks.0.attn.sdpa0



def no_capturable_op(model_type: str) -> EmulateError:
    """The error for a model whose forward ran no matrix product the emulator can capture."""
    return EmulateError(f"model: {model_type} ran no capturable matrix product (nn.Linear, nn.Conv2d, "
                        "F.linear, matmul/mm/bmm/@, F.scaled_dot_product_attention): nothing to emulate")


@dataclass
class OpCall:
    """One captured op: its tensor operands and the op written as products (``ops``)."""

    kind: str
    operands: tuple[Tensor, ...]
    decomposed: Callable[[ops.Product], Tensor]


class Engine(Protocol):
    """What a capture hands ops to (``EmulationRun``, the calibration recorder)."""

    def run_op(self, name: str, call: OpCall, native: Callable[[], Tensor]) -> Tensor:
        """Compute a captured op: ``call.decomposed(product)`` or ``native()``."""

    def unsupported(self, name: str, func_name: str, native: Callable[[], Any]) -> Any:
        """A matrix-like op with no emulation: note it and run ``native()``."""

    def forward_done(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        """The outermost module call returned ``output``."""


def _linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> OpCall:
    return OpCall("linear", (input, weight), lambda p: ops.linear(p, input, weight, bias))


def _conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
            padding: Any = 0, dilation: Any = 1, groups: int = 1) -> OpCall:
    return OpCall("conv2d", (input, weight),
                  lambda p: ops.conv2d(p, input, weight, bias, stride, padding, dilation, groups))


def _sdpa(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
          dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
          enable_gqa: bool = False) -> OpCall:
    return OpCall("attention", (query, key, value), lambda p: ops.scaled_dot_product_attention(
        p, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa))


def _matmul(input: Tensor, other: Tensor | None = None, mat2: Tensor | None = None) -> OpCall:
    other = mat2 if other is None else other  # torch.mm/bmm name it mat2
    if isinstance(input, nn.Parameter) and not isinstance(other, nn.Parameter):
        return OpCall("matmul", (input, other), lambda p: ops.weight_first_matmul(p, input, other))
    weight = isinstance(other, nn.Parameter)
    return OpCall("matmul", (input, other), lambda p: ops.matmul(p, input, other, b_is_weight=weight))


def bind(func: Callable, args: tuple, kwargs: dict) -> OpCall | None:
    """The ``OpCall`` of a captured function call, or None when it is not one (e.g. ``out=``)."""
    kind = _KINDS.get(func)
    if kind is None or "out" in kwargs:
        return None
    if func is Tensor.__rmatmul__:
        args = (args[1], args[0])
    binder = {"linear": _linear, "conv2d": _conv2d, "attention": _sdpa, "matmul": _matmul}[kind]
    try:
        call = binder(*args, **kwargs)
    except TypeError:  # a call form we do not know: it runs native and is listed
        return None
    return call if all(isinstance(t, Tensor) for t in call.operands) else None


@dataclass
class _Frame:
    name: str
    module: nn.Module
    owns_mode: bool
    counts: dict[str, int] = field(default_factory=dict)


class _Mode(TorchFunctionMode):
    def __init__(self, capture: "Capture") -> None:
        super().__init__()
        self.capture = capture

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        cap = self.capture
        if cap.suspended or not cap.stack:
            return func(*args, **kwargs)
        call = bind(func, args, kwargs)
        if call is not None:
            return cap.engine.run_op(cap.op_name(call.kind), call, lambda: func(*args, **kwargs))
        func_name = getattr(func, "__name__", "")
        if func in _KINDS or func_name in UNSUPPORTED:
            return cap.engine.unsupported(cap.op_name(func_name.strip("_")), func_name,
                                          lambda: func(*args, **kwargs))
        return func(*args, **kwargs)


class Capture:
    """Hooks on every module of ``model`` that route its matrix products to ``engine``."""

    def __init__(self, model: nn.Module, engine: Engine) -> None:
        self.model, self.engine = model, engine
        self.stack: list[_Frame] = []
        self.suspended = False
        self._mode = _Mode(self)
        self._owner: int | None = None  # the thread whose forward (and its output check) is running
        self._active = 0                # outermost calls of that thread not finished yet
        self._lock = threading.Lock()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def attach(self) -> None:
        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_pre_hook(self._enter_hook(name), prepend=True))
            self._handles.append(module.register_forward_hook(self._exit_hook, with_kwargs=True,
                                                              always_call=True))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @contextlib.contextmanager
    def suspend(self) -> Iterator[None]:
        """Run everything native inside (the float32 reference pass)."""
        before, self.suspended = self.suspended, True
        try:
            yield
        finally:
            self.suspended = before

    def op_name(self, kind: str) -> str:
        """A stable name for the next ``kind`` op of the module now running."""
        frame = self.stack[-1]
        index = frame.counts.get(kind, 0)
        frame.counts[kind] = index + 1
        owner = _OWNERS.get(kind)
        if index == 0 and owner is not None and isinstance(frame.module, owner):
            return frame.name or type(frame.module).__name__
        stem = f"{_STEMS.get(kind, kind)}{index}"
        return f"{frame.name}.{stem}" if frame.name else stem

    def _enter_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: Any) -> None:
            with self._lock:
                if self._owner not in (None, threading.get_ident()):
                    raise EmulateError(f"model: {type(module).__name__} was called while a forward of the "
                                       "same converted model runs in another thread; a converted model runs one "
                                       "forward at a time (convert one copy of the model per thread)")
                self._owner = threading.get_ident()
                owns = not self.stack
                self._active += owns
                self.stack.append(_Frame(name, module, owns))
            if owns:
                self._mode.__enter__()
        return hook

    def _exit_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self._owner != threading.get_ident() or not self.stack or self.stack[-1].module is not module:
            return  # a refused call from another thread, or its pre-hook never ran (an earlier one raised)
        frame = self.stack.pop()
        if not frame.owns_mode:
            return
        self._mode.__exit__(None, None, None)
        try:
            if not self.suspended and output is not None:  # None: forward raised, nothing to check
                self.engine.forward_done(module, args, kwargs, output)
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self._owner = None
