"""``FormatLike``: what the CPU speed routes (``_fastcast``, ``_fastround``, ``_fastacc``) read of a
``formats.FloatFormat``. A protocol rather than the class, because ``formats`` imports the routes."""

from __future__ import annotations

from typing import Protocol

import torch


class FormatLike(Protocol):
    """The fields and methods of ``formats.FloatFormat`` that the speed routes use."""

    exp_bits: int
    man_bits: int
    bias: int
    specials: str
    subnormals: bool
    saturate: bool
    nan: str
    signed: bool

    @property
    def emin(self) -> int: ...
    @property
    def emax(self) -> int: ...
    @property
    def max(self) -> float: ...
    @property
    def min_normal(self) -> float: ...
    @property
    def min_subnormal(self) -> float: ...
    @property
    def max_code(self) -> int: ...
    @property
    def inf_code(self) -> int | None: ...
    @property
    def nan_code(self) -> int | None: ...
    @property
    def negative_zero(self) -> bool: ...
    def encode(self, x: torch.Tensor) -> torch.Tensor: ...
    def decode(self, codes: torch.Tensor) -> torch.Tensor: ...
