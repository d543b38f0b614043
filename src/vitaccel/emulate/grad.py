"""Gradients of emulated products: straight-through (``grad='ste'``) or a clear error.

An emulated product is computed without autograd (bit manipulation has no useful derivative).
``straight_through`` returns its value with the float32 product's gradient, the usual way to
fine-tune through quantisation; ``no_gradient`` makes a backward through it fail loudly instead
of silently training only the parameters around it (biases, norms).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vitaccel.errors import EmulateError


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, emulated: Tensor, reference: Tensor) -> Tensor:
        return emulated

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:
        return None, grad


class _NoGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, emulated: Tensor, a: Tensor, b: Tensor) -> Tensor:
        return emulated

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> None:
        raise EmulateError("backward through an emulated product: it has no gradient unless the model is "
                           "converted with grad='ste' (straight-through)")


def straight_through(emulated: Tensor, reference: Tensor) -> Tensor:
    """``emulated``'s value, ``reference``'s gradient (``reference`` = the float32 product with autograd)."""
    return _StraightThrough.apply(emulated, reference)


def no_gradient(emulated: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``emulated`` linked to its operands ``a``, ``b`` so that a backward through it raises EmulateError."""
    return _NoGradient.apply(emulated, a, b)
