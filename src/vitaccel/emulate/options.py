"""``EmulateOptions``: which ops run on the emulated accelerator and what is recorded.

Validated with ``vitaccel.configtools``, so a bad option is an error that names the option,
the value and what is allowed.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch
from torch import Tensor

from vitaccel.configtools import field, from_dict, validate

# The op kinds that can run emulated; "attention" is F.scaled_dot_product_attention.
OP_KINDS: tuple[str, ...] = ("linear", "conv2d", "matmul", "attention")
GRADS: tuple[str | None, ...] = (None, "ste")


def _kinds(value: tuple[str, ...]) -> str | None:
    unknown = [v for v in value if v not in OP_KINDS]
    return f"unknown op kinds {unknown}; choose from {list(OP_KINDS)}" if unknown else None


@dataclass
class EmulateOptions:
    """How a model runs on the emulated accelerator (all optional keyword arguments of ``convert``)."""

    exact: bool = field(True, help="only tiers bit-identical to the golden model (False: native "
                                   "accumulation order, much faster for whole-model studies)")
    ops: tuple[str, ...] = field(OP_KINDS, check=_kinds, help="op kinds that run emulated; the rest run native")
    skip: tuple[str, ...] = field((), help="fnmatch patterns of op names that run native, e.g. 'head'")
    grad: str | None = field(None, choices=GRADS, help="backward through emulated ops: None (no "
                                                      "gradient) or 'ste' (straight-through)")
    stats: bool = field(True, help="measure each op's and the model output's error against float32")

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def build(cls, **options: object) -> "EmulateOptions":
        """Options from keyword arguments, every key and value validated."""
        return from_dict(cls, options)

    def native_reason(self, kind: str, name: str, operands: tuple[Tensor, ...]) -> str | None:
        """Why the op ``name`` of ``kind`` runs native under these options, or None if it is emulated."""
        dtypes = [t.dtype for t in operands if t.dtype != torch.float32]
        if dtypes:
            return f"dtype {dtypes[0]} (only float32 runs emulated)"
        if kind not in self.ops:
            return f"op kind {kind!r} not in ops"
        for pattern in self.skip:
            if fnmatch.fnmatchcase(name, pattern):
                return f"skipped by pattern {pattern!r}"
        return None
