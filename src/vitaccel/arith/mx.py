"""OCP Microscaling (MX v1.0) block formats: a shared E8M0 scale per block of elements.

The spec, as vitaccel implements it (section numbers of the OCP Microscaling Formats (MX)
Specification v1.0, September 2023):

* A block (section 5) is ``k`` elements P_1..P_k (k = 32 in the concrete formats of section 5.2;
  configurable here, ``block``) along one axis of a tensor, and one shared scale X. The value
  of element i is ``v_i = X * P_i``. If X is NaN every v_i is NaN, whatever P_i is; otherwise a
  P_i that is NaN or infinity (in element formats that have them) gives v_i = P_i.
* The scale (section 5.4) is E8M0: an 8-bit unsigned exponent, bias 127, no sign, no mantissa,
  no zero: code c is 2^(c - 127) for c in 0..254 (2^-127 .. 2^127); code 0xFF is NaN. Held here
  as the integer code (``scale codes``); ``decode_scale`` decodes it.
* Element formats (section 5.3): FP8 E5M2 (bias 15, IEEE infinities and NaN, max 57344) and
  E4M3 (bias 7, no infinities, S.1111.111 is NaN, max 448) as in the OCP FP8 spec; FP6 E3M2
  (bias 3, max 28) and E2M3 (bias 1, max 7.5); FP4 E2M1 (bias 1, max 6): no infinities, no NaN,
  subnormals everywhere; INT8: 8-bit two's complement with an implicit scale 2^-6 (1 sign, 1
  integer and 6 fraction bits), values -2 .. 1 63/64; its largest "normal" is 1 63/64.
  emax_elem, the exponent of the largest normal element value: E5M2 15, E4M3 8, E3M2 4, E2M3 2,
  E2M1 2, INT8 0.
* Conversion from float (section 6.3, the minimally supported algorithm):

      shared_exp = floor(log2(max_i |V_i|)) - emax_elem
      X = 2^shared_exp
      P_i = quantize_to_element_format(V_i / X)     # round to nearest even, normal values that
                                                    # exceed the element's max normal clamp to it
  shared_exp is clamped to E8M0's range [-127, 127] (from below only: a finite float32 block
  never needs more than 127 - emax_elem). Where the spec leaves a case to the implementation,
  vitaccel does this (and the peers do this):

  - a block of zeros (max |V| = 0, log2 = -inf): shared_exp = -127, code 0, every element 0 with
    the input's sign (microxcaling and torchao give code 0 too);
  - a NaN anywhere in the block: X = NaN (code 0xFF), every element 0 (torchao and microxcaling
    both give a NaN scale);
  - an infinity in the block (max |V| = inf has no exponent in E8M0's range): X = NaN, as
    microxcaling's "overflowing shared exps are set to NaN"; torchao instead gives the scale
    2^(128 - emax_elem) and saturates the infinite element to the element's max;
  - the last block along the axis may be partial (fewer than ``block`` elements): it is its own
    block, scaled by its own maximum (nothing is padded into it);
  - rounding is round-to-nearest-even by default; ``toward_zero`` (truncation) is offered as the
    float datapath's ``operand_rounding`` option. The clamp makes every element finite.

  INT8 elements clamp symmetrically to +-127/64 (the max normal), so encoding never yields the
  code 0x80 (-2), which decodes as -2. Every value ``encode`` yields is a float32 value
  (at most 8 significand bits, magnitudes in [2^-143, 2^128)): ``quantize`` is exact in float32.

The readable scalar reference is ``golden.mx_quantize``; the functions here are the vectorised
torch path, tested bit for bit against it. Peers depart from the spec where noted above and in
``docs/SPEC.md``: microxcaling's default element rounding ``"nearest"`` is half away from zero and
its ``floor(log2(x))`` is a float32 log2 (it rounds up just below a power of two, e.g. 2^20 -
2^-4); torchao's ``FLOOR`` scale mode reads the exponent bits (exact) but clamps the scale's
float value to 2^-126 (the E8M0 code stays 0) and offers ``RCEIL``/``CEIL``/``EVEN`` modes that
are not the spec's rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from vitaccel.arith import _fastround
from vitaccel.arith.bits import exponent, is_int, pow2
from vitaccel.arith.formats import NAMED, FloatFormat
from vitaccel.errors import UserError

E8M0_BIAS = 127
E8M0_NAN = 0xFF
_E8M0 = NAMED["e8m0"]  # the scale format (arith/formats.py)
SCALE_MIN, SCALE_MAX = -127, 127          # the exponents E8M0 codes 0 .. 254 hold
MX_ROUNDINGS: tuple[str, ...] = ("nearest_even", "toward_zero")
INT8_FRACTION_BITS = 6                    # MXINT8 elements: two's complement with an implicit 2^-6
INT8_MAX = 127                            # the clamp (max normal 127/64); code 0x80 (-2) decodes only

# name -> element: a FloatFormat name, or "int8"
ELEMENTS: dict[str, str] = {
    "mxfp8_e5m2": "e5m2",
    "mxfp8_e4m3": "e4m3",
    "mxfp6_e3m2": "e3m2",
    "mxfp6_e2m3": "e2m3",
    "mxfp4": "e2m1",
    "mxint8": "int8",
}
MX_NAMES: tuple[str, ...] = tuple(ELEMENTS)

# element formats as the conversion uses them: saturating (the spec's clamp to max normal)
_ELEMENT_FORMATS: dict[str, FloatFormat] = {
    "e5m2": FloatFormat(5, 2, saturate=True),
    "e4m3": NAMED["e4m3"],                        # fn: overflow already saturates
    "e3m2": FloatFormat(3, 2, specials="finite"),  # finite formats saturate
    "e2m3": FloatFormat(2, 3, specials="finite"),
    "e2m1": FloatFormat(2, 1, specials="finite"),
}


class MXEncoded(NamedTuple):
    """An MX tensor as codes: ``elements`` (int16 bit patterns, the input's shape) and ``scales``
    (uint8 E8M0 codes; the input's shape with the block axis cut to ceil(n / block))."""

    elements: torch.Tensor
    scales: torch.Tensor


def decode_scale(codes: torch.Tensor) -> torch.Tensor:
    """Float32 value of E8M0 codes: 2^(code - 127), NaN for 0xFF (2^-127 is a float32 subnormal);
    the ``e8m0`` FloatFormat's own decoder."""
    return _E8M0.decode((codes.long() & 0xFF).to(torch.int16))


@dataclass(frozen=True)
class MXFormat:
    """An MX block format: ``element`` (e5m2, e4m3, e3m2, e2m3, e2m1 or int8) and ``block`` elements
    per shared E8M0 scale; see the module docstring for the spec."""

    element: str
    block: int = 32

    def __post_init__(self) -> None:
        if self.element not in set(ELEMENTS.values()):
            raise UserError(f"element={self.element!r} is not allowed; choose one of {sorted(set(ELEMENTS.values()))}")
        if not is_int(self.block) or self.block < 1:
            raise UserError(f"block={self.block!r} is not allowed; a positive integer (elements per scale) is "
                            "required (the OCP formats use 32)")

    @staticmethod
    def named(name: str, block: int = 32) -> "MXFormat":
        """An MX format by name: mxfp8_e5m2, mxfp8_e4m3, mxfp6_e3m2, mxfp6_e2m3, mxfp4, mxint8."""
        if name not in ELEMENTS:
            raise UserError(f"MX format name {name!r} is unknown; choose one of {list(MX_NAMES)}")
        return MXFormat(ELEMENTS[name], block)

    @property
    def name(self) -> str:
        return next(k for k, v in ELEMENTS.items() if v == self.element)

    @property
    def element_format(self) -> FloatFormat | None:
        """The (saturating) FloatFormat of the elements; None for int8."""
        return _ELEMENT_FORMATS.get(self.element)

    @property
    def bits(self) -> int:
        """Bits of one element (the scale adds 8 per block)."""
        return 8 if self.element == "int8" else self.element_format.bits

    @property
    def emax_elem(self) -> int:
        """Exponent of the largest normal element value (section 6.3's emax_elem)."""
        return 0 if self.element == "int8" else self.element_format.emax

    @property
    def element_max(self) -> float:
        """Largest element magnitude conversion produces (the clamp)."""
        return INT8_MAX / 2 ** INT8_FRACTION_BITS if self.element == "int8" else self.element_format.max

    @property
    def element_min(self) -> float:
        """Smallest non-zero element magnitude."""
        return 2.0 ** -INT8_FRACTION_BITS if self.element == "int8" else self.element_format.min_subnormal

    # -- what the datapath's exactness budgets read (as FloatFormat has them) -------------------
    @property
    def man_bits(self) -> int:
        """Fraction bits of a value's significand: every value is an integer below 2^(man_bits + 1)
        times a power of two (int8: |n| <= 128, 7 bits above the power of two)."""
        return 6 if self.element == "int8" else self.element_format.man_bits

    @property
    def max(self) -> float:
        """Largest finite magnitude of a value (element max times 2^127; decode may exceed float32)."""
        return self.element_max * 2.0 ** SCALE_MAX

    @property
    def min_subnormal(self) -> float:
        """Smallest non-zero magnitude of a value (element min times 2^-127)."""
        return self.element_min * 2.0 ** SCALE_MIN

    # -- conversion ------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, axis: int = -1, rounding: str = "nearest_even") -> MXEncoded:
        """Element codes and E8M0 scale codes of ``x`` in blocks along ``axis`` (section 6.3)."""
        x, axis = _check_input(x), _check_axis(axis, x)
        _check_rounding(rounding)
        shared, scaled = self._scaled(x, axis)
        if self.element == "int8":
            codes = (_round_int(scaled * 2.0 ** INT8_FRACTION_BITS, rounding).long() & 0xFF).to(torch.int16)
        else:
            codes = self.element_format.encode(scaled, rounding)
        nan = shared == E8M0_NAN - E8M0_BIAS  # their elements are 0 (``_scaled``)
        scales = torch.where(nan, E8M0_NAN, shared + E8M0_BIAS).to(torch.uint8).movedim(-1, axis)
        return MXEncoded(self._unblocks(codes, x.shape[axis], axis), scales.contiguous())

    def decode(self, elements: torch.Tensor, scales: torch.Tensor, axis: int = -1) -> torch.Tensor:
        """Float32 values ``X * P_i`` of element codes and E8M0 scale codes (section 5.1): NaN where X
        is NaN; an element NaN or infinity is kept; a product beyond float32 is +-inf."""
        for name, t in (("elements", elements), ("scales", scales)):
            if not isinstance(t, torch.Tensor) or t.dtype.is_floating_point or t.is_complex() or t.dtype == torch.bool:
                raise TypeError(f"{name} must be an integer tensor, got {getattr(t, 'dtype', type(t).__name__)}")
        axis = _check_axis(axis, elements)
        n = elements.shape[axis]
        want = (*elements.shape[:axis], -(-n // self.block), *elements.shape[axis + 1:])
        if tuple(scales.shape) != want:
            raise UserError(f"scales: shape {tuple(scales.shape)} does not fit elements of shape "
                            f"{tuple(elements.shape)} in blocks of {self.block} along axis {axis}; {want} is required")
        if self.element == "int8":
            c = elements.long() & 0xFF
            p = torch.where(c >= 128, c - 256, c).float() * 2.0 ** -INT8_FRACTION_BITS
        else:
            p = self.element_format.decode(elements)
        values = self._blocks(p, axis) * decode_scale(scales).movedim(axis, -1).unsqueeze(-1)
        return self._unblocks(values, n, axis)

    def quantize(self, x: torch.Tensor, axis: int = -1, rounding: str = "nearest_even") -> torch.Tensor:
        """``decode(*encode(x))`` as float32, computed without the codes: for a contiguous float32
        CPU ``x`` blocked along its last axis in one fused numba pass (``_fastround.mx_quantize``),
        else by the torch ops below with the element format's ``quantize``."""
        x, axis = _check_input(x), _check_axis(axis, x)
        _check_rounding(rounding)
        if axis == x.dim() - 1 and _fastround.applies(x):  # one fused pass
            return _fastround.mx_quantize(self.element_format, x, self.block, self.emax_elem, rounding)
        shared, scaled = self._scaled(x, axis)
        if self.element == "int8":
            p = _round_int(scaled * 2.0 ** INT8_FRACTION_BITS, rounding) * 2.0 ** -INT8_FRACTION_BITS
        else:
            p = self.element_format.quantize(scaled, rounding)
        nan = shared == E8M0_NAN - E8M0_BIAS
        scale = torch.where(nan, torch.nan, _pow2(torch.where(nan, 0, shared), torch.float32))
        return self._unblocks(p.float() * scale.unsqueeze(-1), x.shape[axis], axis)

    # -- blocks ----------------------------------------------------------------------------
    def _blocks(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        """``x`` with ``axis`` moved last and cut into (..., blocks, block); the ragged tail padded
        with zeros (zeros change no block maximum and are cut off again by ``_unblocks``)."""
        x = x.movedim(axis, -1)
        n = x.shape[-1]
        nb = -(-n // self.block)
        if nb * self.block != n:
            x = torch.nn.functional.pad(x, (0, nb * self.block - n))
        return x.reshape(*x.shape[:-1], nb, self.block)

    @staticmethod
    def _unblocks(x: torch.Tensor, n: int, axis: int) -> torch.Tensor:
        """The inverse of ``_blocks``: (..., blocks, block) back to ``n`` entries along ``axis``."""
        x = x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])
        return (x[..., :n] if x.shape[-1] != n else x).movedim(-1, axis).contiguous()

    def _scaled(self, x: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(shared exponents (..., blocks), V / X as (..., blocks, block)), ``axis`` moved last.

        V / X is exact in float64; in float32 it is exact too or below 2^-126 in magnitude, where
        every element format rounds it to zero (their smallest step is at least 2^-16) with its sign.
        NaN-scale blocks get elements 0.
        """
        blocks = self._blocks(x, axis)
        shared = _shared_exponents(blocks, self.emax_elem)
        nan = shared == E8M0_NAN - E8M0_BIAS
        scaled = blocks * _pow2(-torch.where(nan, 0, shared), x.dtype).unsqueeze(-1)
        if bool(nan.any()):
            scaled = torch.where(nan.unsqueeze(-1), 0.0, scaled)
        return shared, scaled


def _shared_exponents(blocks: torch.Tensor, emax_elem: int) -> torch.Tensor:
    """floor(log2(max |V|)) - emax_elem of each block (..., blocks, block), clamped to [-127, 127];
    128 (the NaN code minus the bias) where the block holds NaN or infinity.

    Float32: from the bits of max |V| (magnitudes order as integers; NaN and inf lie above every
    finite one): the exponent field minus 127 is floor(log2) for normals, and every subnormal or
    zero maximum (field 0) clamps to -127 anyway. Float64: frexp, exact.
    """
    if blocks.dtype == torch.float32:
        top = (blocks.view(torch.int32) & 0x7FFFFFFF).amax(dim=-1)
        special = top >= 0x7F800000
        shared = torch.clamp((top >> 23) - 127 - emax_elem, min=SCALE_MIN, max=SCALE_MAX).long()
    else:
        amax = blocks.abs().amax(dim=-1)                # NaN propagates through amax
        special = ~torch.isfinite(amax)
        shared = torch.clamp(exponent(torch.where(special, 1.0, amax)) - emax_elem, min=SCALE_MIN, max=SCALE_MAX)
        shared = torch.where(amax == 0, SCALE_MIN, shared)
    return torch.where(special, E8M0_NAN - E8M0_BIAS, shared)


def _pow2(e: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Exact 2^e for integer e in [-127, 127] as float32 (2^-127 is subnormal) or float64."""
    if dtype == torch.float64:
        return pow2(e, torch.float64)
    return torch.where(e == -127, 2.0 ** -127, pow2(e.clamp(min=-126), torch.float32))


def _round_int(v: torch.Tensor, rounding: str) -> torch.Tensor:
    """MXINT8 element integers: round half to even (torch.round) or truncate, clamped to +-127."""
    n = torch.round(v) if rounding == "nearest_even" else torch.trunc(v)
    return torch.clamp(n, -INT8_MAX, INT8_MAX) + 0.0       # + 0.0: integers have no -0


def _check_input(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.is_complex() or not x.dtype.is_floating_point:
        raise TypeError(f"x must be a real floating-point tensor, got dtype {x.dtype}")
    if x.dim() == 0:
        raise UserError("x: a 0-d tensor has no axis to cut into blocks; pass at least 1 dim")
    if x.requires_grad:
        x = x.detach()
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _check_axis(axis: int, x: torch.Tensor) -> int:
    if not is_int(axis) or not -x.dim() <= axis < x.dim():
        raise UserError(f"axis={axis!r} is not allowed for a tensor of {x.dim()} dims; choose an int from "
                        f"{-x.dim()} to {x.dim() - 1}")
    return axis % x.dim()


def _check_rounding(rounding: str) -> None:
    if rounding not in MX_ROUNDINGS:
        raise UserError(f"rounding={rounding!r} is not allowed for MX formats; choose one of {list(MX_ROUNDINGS)}")


def operand_format(name: str, block: int = 32) -> FloatFormat | MXFormat:
    """The format of a float-datapath operand name: an ``MXFormat`` (with ``block``) for the MX
    names, else ``FloatFormat.named(name)``."""
    return MXFormat.named(name, block) if name in ELEMENTS else FloatFormat.named(name)


def quantize_operand(fmt: FloatFormat | MXFormat, x: torch.Tensor, axis: int, rounding: str) -> torch.Tensor:
    """An operand rounded to its format: MX formats in blocks along ``axis`` (the reduction axis),
    float formats element by element; float32 out."""
    if isinstance(fmt, MXFormat):
        return fmt.quantize(x, axis, rounding)
    return fmt.quantize(x, rounding)


__all__ = ["E8M0_BIAS", "E8M0_NAN", "ELEMENTS", "MXEncoded", "MXFormat", "MX_NAMES", "decode_scale",
           "operand_format", "quantize_operand"]
