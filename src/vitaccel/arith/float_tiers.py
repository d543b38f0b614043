"""The float tiers of ``emulated_matmul`` (DESIGN.md section 6): ``fast``, ``tiled`` and ``faithful``.

``float_matmul`` rounds the operands to their formats and then runs

* ``fast``     one native matmul: products exact, accumulation in BLAS order (``exact=False``); in
               float64 where float32 cannot hold every product (bfloat16 operands).
* ``tiled``    exact adder-tree group sums, group by group in K order over bounded row chunks:
               one native float64 matmul per group, exact wherever a row's and a column's
               binade spans allow; wider rows and columns redone over exponent bands (each band
               product sums exactly) and recombined exactly. Each sum is rounded once to
               float32 as the accumulator adds it: bit-identical to the golden model. With an
               accumulator narrower than float32 (``float_datapath.accumulator``) group sums that
               are not exact in float64 come rounded to float32 toward odd, so that rounding them
               to the accumulator is correct, and each add is rounded to it
               (``floatpath.accumulate``; on the CPU the same steps fused: ``_fastacc``).
* ``faithful`` every product of a group materialised (bounded row chunks), aligned to the
               group's largest exponent, summed exactly: bit-identical; needed for ``align_bits``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from vitaccel.arith import _fastacc, floatpath
from vitaccel.arith.config import FloatDatapath
from vitaccel.arith.formats import FloatFormat
from vitaccel.arith.mx import MXFormat, operand_format, quantize_operand

Format = FloatFormat | MXFormat  # MX formats bring the man_bits, max and min_subnormal read here


def float_matmul(a: torch.Tensor, b: torch.Tensor, fp: FloatDatapath, tier: str, chunk_bytes: int) -> torch.Tensor:
    """``a @ b`` on the float datapath ``fp`` in ``tier`` (fast, tiled or faithful), as float32; the
    exact tiers work in row chunks of about ``chunk_bytes`` (at least one row)."""
    fa, fb = operand_format(fp.a_format, fp.mx_block), operand_format(fp.b_format, fp.mx_block)
    # MX operands: one E8M0 scale per block of mx_block along K (a's last axis, b's second last);
    # the scaled values X * P are exact float32, so every tier below sees plain values
    qa = quantize_operand(fa, a if a.dtype == torch.float64 else a.float(), -1, fp.operand_rounding)
    qb = quantize_operand(fb, b if b.dtype == torch.float64 else b.float(), -2, fp.operand_rounding)
    if tier == "fast" or 0 in (*qa.shape, *qb.shape):  # empty operands: zeros (K = 0) or empty
        dtype = torch.float32 if _products_fit_float32(fa, fb) else torch.float64
        return torch.matmul(qa.to(dtype), qb.to(dtype)).float()

    batch = torch.broadcast_shapes(qa.shape[:-2], qb.shape[:-2])
    m, k, n = qa.shape[-2], qa.shape[-1], qb.shape[-1]
    g = fp.group_size
    ng = -(-k // g)
    A = qa.expand(*batch, m, k).reshape(-1, m, k)
    B = qb.expand(*batch, k, n).reshape(-1, k, n) if qb.dim() > 2 else qb.unsqueeze(0)
    pad = ng * g - k
    if pad:  # zero products change no sum
        A = torch.nn.functional.pad(A, (0, pad))
        B = torch.nn.functional.pad(B, (0, 0, 0, pad))
    Ag = A.reshape(A.shape[0], m, ng, g)                                # (Bt, M, ng, G)
    Bg = B.reshape(B.shape[0], ng, g, n)                                # (Bt|1, ng, G, N)

    faithful = tier == "faithful"
    make = _aligned_group_sums if faithful else _tiled_group_sums
    group_sums = _with_specials(Ag, Bg, lambda finite_a, finite_b: make(finite_a, finite_b, fa, fb, fp))
    rows = max(1, min(m, chunk_bytes // row_bytes(fp, tier, A.shape[0], n)))
    out = torch.empty(A.shape[0], m, n, dtype=torch.float32, device=a.device)
    facc = FloatFormat.named(fp.accumulator)
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        acc = torch.zeros(A.shape[0], r1 - r0, n, dtype=torch.float32, device=a.device)
        for gi in range(ng):  # the accumulator, in K order: each group sum rounded as it is added
            if facc.man_bits == 23:  # float32: the exact sum's one rounding is the native add's
                acc.add_(group_sums(r0, r1, gi).float())
            elif acc.is_cpu:  # the same roundings, fused (arith/_fastacc.py)
                _fastacc.add_group(acc, group_sums(r0, r1, gi), facc)
            else:  # the group sum rounded to the accumulator, then the add rounded to it
                acc = floatpath.accumulate(acc, floatpath.round_to(facc, group_sums(r0, r1, gi)), facc)
        out[:, r0:r1] = acc
    return out.reshape(*batch, m, n)


def _products_fit_float32(fa: Format, fb: Format) -> bool:
    """True when every product of the two formats is a float32 value (exact, no overflow, no
    underflow), so the fast tier's float32 matmul keeps products exact; bfloat16's are not."""
    return (fa.man_bits + fb.man_bits + 2 <= 24 and fa.max * fb.max < 2.0 ** 128
            and math.log2(fa.min_subnormal) + math.log2(fb.min_subnormal) >= -149)


def row_bytes(fp: FloatDatapath, tier: str, batch: int, n: int) -> int:
    """Working-set bytes of one row of A in an exact tier's chunk, for ``batch`` matrices with N
    columns: faithful holds each product and its aligned integer, tiled a few float64 copies of
    one group's sums."""
    if tier == "faithful":
        fa, fb = operand_format(fp.a_format, fp.mx_block), operand_format(fp.b_format, fp.mx_block)
        return batch * n * fp.group_size * (8 if _aligned_dtype(fa, fb, fp) == torch.float32 else 16)
    return batch * n * 8 * 4


# Group sums of rows r0:r1 of A in group gi: (Bt, r1 - r0, N), float32 or float64 holding exact
# sums (rounded to float32 by the accumulator).
GroupSums = Callable[[int, int, int], torch.Tensor]


def _with_specials(A: torch.Tensor, B: torch.Tensor,
                   exact_for: Callable[[torch.Tensor, torch.Tensor], GroupSums]) -> GroupSums:
    """Group sums of A (Bt, M, ng, G) with B (Bt|1, ng, G, N) where inf/NaN follow IEEE (NaN for
    inf*0, inf-inf); ``exact_for(A, B)`` (built once, for the finite parts) sees finite data."""
    if _all_finite(A) and _all_finite(B):
        return exact_for(A, B)
    finite_a, finite_b = torch.isfinite(A), torch.isfinite(B)
    exact = exact_for(torch.where(finite_a, A, 0.0), torch.where(finite_b, B, 0.0))
    B64 = B.double()

    def sums(r0: int, r1: int, gi: int) -> torch.Tensor:
        naive = torch.matmul(A[:, r0:r1, gi].double(), B64[:, gi])  # finite parts cannot overflow float64
        return torch.where(torch.isfinite(naive), exact(r0, r1, gi), naive)

    return sums


def _all_finite(x: torch.Tensor) -> bool:
    """No inf or NaN in x: one read-only reduction (aminmax carries NaN and infinities through)."""
    lo, hi = torch.aminmax(x)
    return math.isfinite(float(lo)) and math.isfinite(float(hi))


def _tiled_group_sums(A: torch.Tensor, B: torch.Tensor, fa: Format, fb: Format,
                      fp: FloatDatapath) -> GroupSums:
    """Exact group sums of finite A (Bt, M, ng, G) with finite B (Bt|1, ng, G, N).

    One float64 matmul gives every group sum whose row of A and column of B each span few enough
    binades that all partial sums are exact (a sum of terms that are multiples of 2^q and below
    2^(q+53) is exact in any order). Rows or columns that span more are recomputed exactly with
    exponent bands (``_banded_sums``); spans are found once, up front.
    """
    n_bits = int(math.log2(fp.group_size))
    budget = 52 - 2 - n_bits - fa.man_bits - fb.man_bits
    half_a = budget // 2
    B64 = B.double()
    shared = B.shape[0] == 1                                                        # one B for every A
    wide_rows = _span(A, dim=-1) > half_a                                           # (Bt, M, ng)
    wide_cols = _span(B, dim=-2) > budget - half_a                                  # (Bt|1, ng, N)
    row_groups = set(wide_rows.any(dim=1).any(dim=0).nonzero().flatten().tolist())
    col_groups = set(wide_cols.any(dim=2).any(dim=0).nonzero().flatten().tolist())

    def exact_fn(r0: int, r1: int, gi: int) -> torch.Tensor:
        Ac = A[:, r0:r1, gi]                                                        # (Bt, rows, G)
        out = torch.matmul(Ac.double(), B64[:, gi])  # exact where spans allow
        if gi in row_groups:  # the wide rows of each B as one matrix: (rows, G) @ (G, N)
            b, i = wide_rows[:, r0:r1, gi].nonzero().unbind(1)
            for bb in [0] if shared else b.unique().tolist():
                rb, ri = (b, i) if shared else (b[b == bb], i[b == bb])
                if len(rb):
                    out[rb, ri] = _banded_sums(Ac[rb, ri], B[bb, gi], fa, fb, fp).double()
        if gi in col_groups:  # the wide columns of each B against all rows that use it
            for bb in range(B.shape[0]):
                j = wide_cols[bb, gi].nonzero()[:, 0]
                if not len(j):
                    continue
                rows = Ac.reshape(-1, Ac.shape[-1]) if shared else Ac[bb]
                sums = _banded_sums(rows, B[bb, gi][:, j], fa, fb, fp).double()
                if shared:
                    out[:, :, j] = sums.reshape(*Ac.shape[:2], len(j))
                else:
                    out[bb][:, j] = sums
        return out

    return exact_fn


def _span(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Binades spanned by the nonzero entries of float32 ``x`` along ``dim`` (max - min exponent;
    < 0 if all are zero). Magnitudes are reduced as ordered integer bits, exponents taken after."""
    mag = x.view(torch.int32) & 0x7FFFFFFF
    top = mag.amax(dim)
    low = mag.sub_(1).bitwise_and_(0x7FFFFFFF).amin(dim) + 1  # zeros -> the top of the range: smallest non-zero
    span = floatpath.exponent(top.view(torch.float32)) - floatpath.exponent(low.view(torch.float32))
    return torch.where(top == 0, -1, span)


def _banded_sums(A: torch.Tensor, B: torch.Tensor, fa: Format, fb: Format,
                 fp: FloatDatapath) -> torch.Tensor:
    """Exact float32 group sums of finite A @ B by exponent bands: each band pair sums exactly in
    float64; band results are combined exactly (two float64 limbs where they suffice, else int64
    limbs) and rounded once."""
    n_bits = int(math.log2(fp.group_size))
    ra, rb = _exp_range(A), _exp_range(B)
    if ra is None or rb is None:  # every product is zero
        shape = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2]) + (A.shape[-2], B.shape[-1])
        return torch.zeros(shape, dtype=torch.float32, device=A.device)
    budget = 52 - 2 - n_bits - fa.man_bits - fb.man_bits
    wa = min(ra[1] - ra[0], max(budget - (rb[1] - rb[0]), budget // 2))
    bands_a, bands_b = _bands(A, ra[0], wa), _bands(B, rb[0], budget - wa)
    q_min = ra[0] - fa.man_bits + rb[0] - fb.man_bits
    p_max = ra[1] + rb[1] + 2 + n_bits
    terms = len(bands_a) * len(bands_b)
    odd = _odd(fp)
    if floatpath.ExactSum.fits(q_min, p_max, terms):
        two = floatpath.ExactSum(q_min, p_max, terms)
        for band_a, _, _ in bands_a:
            for band_b, _, _ in bands_b:
                two.add(torch.matmul(band_a, band_b))
        return two.result(odd)
    wide = floatpath.WideSum(q_min, p_max, terms)
    for band_a, lo_a, hi_a in bands_a:
        for band_b, lo_b, hi_b in bands_b:
            wide.add(torch.matmul(band_a, band_b), lo_a - fa.man_bits + lo_b - fb.man_bits, hi_a + hi_b + 2 + n_bits)
    return wide.result(odd)


def _odd(fp: FloatDatapath) -> bool:
    """Whether rounded group sums must come rounded to float32 toward odd: for an accumulator
    narrower than float32, which rounds them again."""
    return FloatFormat.named(fp.accumulator).man_bits != 23


def _exp_range(x: torch.Tensor) -> tuple[int, int] | None:
    """(min, max) of floor(log2|x|) over nonzero entries, or None if all are zero."""
    nz = x[x != 0]
    if nz.numel() == 0:
        return None
    e = floatpath.exponent(nz)
    return int(e.min()), int(e.max())


def _bands(x: torch.Tensor, e_lo: int, width: int) -> list[tuple[torch.Tensor, int, int]]:
    """(float64 copy of x holding only the entries whose exponent lies in one band, the band's
    lowest and highest exponent) for each band present."""
    x64 = x.double()
    idx = torch.div(floatpath.exponent(x) - e_lo, width + 1, rounding_mode="floor")
    idx = torch.where(x == 0, -1, idx)
    present = torch.unique(idx[idx >= 0]).tolist()
    if len(present) == 1:
        i = present[0]
        return [(x64, e_lo + i * (width + 1), e_lo + i * (width + 1) + width)]
    return [(torch.where(idx == i, x64, 0.0), e_lo + i * (width + 1), e_lo + i * (width + 1) + width)
            for i in present]


def _aligned_group_sums(A: torch.Tensor, B: torch.Tensor, fa: Format, fb: Format,
                        fp: FloatDatapath) -> GroupSums:
    """Group sums with every product aligned to the group's largest exponent (DESIGN.md 3), of
    finite A (Bt, M, ng, G) with finite B (Bt|1, ng, G, N).

    Products and their aligned integers live in two buffers reused group after group (fresh
    buffers of this size cost more in page faults than the arithmetic); every step but the
    products and the sums is in place.
    """
    dtype = _aligned_dtype(fa, fb, fp)
    int_dtype = torch.int32 if dtype == torch.float32 else torch.int64  # holds aligned sums, < 2^(align+1+n)
    Bd = B.to(dtype).unsqueeze(1)                                       # (Bt|1, 1, ng, G, N)
    buffers: dict[torch.Size, tuple[torch.Tensor, torch.Tensor]] = {}

    def exact_fn(r0: int, r1: int, gi: int) -> torch.Tensor:
        Ad = A[:, r0:r1, gi].to(dtype).unsqueeze(-1)                    # (Bt, rows, G, 1)
        Bgi = Bd[:, :, gi]                                              # (Bt|1, 1, G, N)
        shape = torch.broadcast_shapes(Ad.shape, Bgi.shape)             # (Bt, rows, G, N)
        if shape not in buffers:
            buffers.clear()
            buffers[shape] = (torch.empty(shape, dtype=dtype, device=A.device),
                              torch.empty(shape, dtype=int_dtype, device=A.device))
        P, aligned = buffers[shape]
        torch.mul(Ad, Bgi, out=P)                                       # exact products
        emax = floatpath.exponent(torch.maximum(P.amax(dim=-2), P.amin(dim=-2).neg_()))  # of max |product|
        P.mul_(floatpath.pow2(fp.align_bits - emax, dtype).unsqueeze(-2))  # exact power-of-two scaling
        aligned.copy_(P if fp.align_rounding == "toward_zero" else P.round_())  # float -> int truncates
        total = aligned.sum(dim=-2, dtype=int_dtype)                    # integers, summed exactly
        scale = floatpath.pow2(emax - fp.align_bits, dtype)
        if int_dtype == torch.int32:  # below 2^24, scaled within float32's normal range: exact
            return total.to(dtype) * scale
        low = total & 0x7FF  # int64 sums reach 2^62: two exact float64 limbs, then one rounding
        return floatpath.round_pair_to_float32((total - low).double() * scale, low.double() * scale, _odd(fp))

    return exact_fn


def _aligned_dtype(fa: Format, fb: Format, fp: FloatDatapath) -> torch.dtype:
    """float32 when products, their scaled forms and the aligned group sums are all exact in it.

    Products have (ma + 1) + (mb + 1) significant bits and exponents between the product of the
    smallest subnormals and of the maxima; aligned sums are integers below 2^(align_bits + 1 + n).
    Otherwise float64, where all of these hold for every format of at most 16 bits.
    """
    n_bits = int(math.log2(fp.group_size))
    fits = (fa.man_bits + fb.man_bits + 2 <= 24 and fp.align_bits + 1 + n_bits <= 24
            and math.log2(fa.min_subnormal * fb.min_subnormal) >= -126 + fp.align_bits
            and math.log2(fa.max) + math.log2(fb.max) + fp.align_bits < 126)
    return torch.float32 if fits else torch.float64
