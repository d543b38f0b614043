"""``emulated_matmul``: one entry point for every datapath, with tiers chosen automatically.

Tiers (DESIGN.md section 6), each reported by ``matmul_tier``:

* ``native``   the host's float32 matmul (``fp32`` preset; nothing is emulated).
* ``fast``     operands rounded exactly, then one native float32 matmul: products stay exact,
               accumulation runs in BLAS order. Only with ``exact=False``; the difference from
               the golden model is bounded by ``fast_error_bound``.
* ``tiled``    exact adder-tree group sums, group by group in K order over bounded row chunks:
               one native float64 matmul per group, exact wherever a row's and a column's
               binade spans allow; wider rows and columns redone over exponent bands (each band
               product sums exactly) and recombined exactly. Each sum is rounded once to
               float32 as the accumulator adds it: bit-identical to the golden model.
* ``faithful`` every product of a group materialised (bounded row chunks), aligned to the
               group's largest exponent, summed exactly: bit-identical; needed for ``align_bits``.

Integer datapaths (``datapath: int``; every tier bit-identical to ``golden.matmul``): operands are
converted to float32, quantised (``intpath`` module docstring), the first one leading-one
truncated (a table lookup), and the integer dot products run as

* ``fast``     one native matmul of float tensors holding the integers, when
               ``intpath.never_overflows`` proves the plain sum is the datapath's result (no
               storage codec, no dropped LSBs, group sums within ``psum_bits`` and
               ``K * max|product| <= 2^(acc_bits-1) - 1``). Exact because every partial sum is an
               integer of magnitude at most ``K * max|product|``: float32 holds them all below
               2^24 (8 x 8 bits: K <= 1040 per float32 matmul; longer K is cut into such chunks
               whose results are added in float64), float64 below 2^53 (8 x 8 bits: K <= 2^39).
               float32 is used only while the host's float32 matmul is IEEE (no TF32/bf16).
* ``tiled``    one native matmul per ``tile_k`` slice (or per group when the adder tree can change
               group sums), then partial-sum rounding, overflow and the storage codec elementwise
               (``intpath.accumulate``).
* ``faithful`` the products of every group materialised in bounded chunks and summed, then the
               same elementwise steps: an independent check of ``tiled``, and its speed reference.

Dequantisation: ``float32(float64(acc) * (float64(a_scale) * float64(b_scale)))``: the scale
product is exact (two float32 significands), then one float64 rounding, then one float32 rounding
(nearest even both); a zero result is +0.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple

import torch

from vitaccel.arith import floatpath, intpath
from vitaccel.arith.config import AcceleratorConfig, FloatDatapath, IntDatapath
from vitaccel.arith.formats import FloatFormat

# Largest working set of one chunk (bytes); bounds memory whatever the shapes. Near cache size
# the exact tiers run fastest: `bench_float.py --threads 1 --chunk-mib 16` against 64 measured
# tiled 4.9x against 7.4x a float32 matmul, faithful (197 rows) 54x against 67x.
CHUNK_BYTES = 16 * 2 ** 20


class Tier(NamedTuple):
    """How a matmul runs: tier name and whether it is bit-identical to the golden model."""

    name: str
    exact: bool


def _tiers(config: AcceleratorConfig, exact: bool, k: int | None) -> list[Tier]:
    """The tiers that may run ``config``, the automatic choice first."""
    if config.datapath == "native":
        return [Tier("native", False)]
    if config.datapath == "int":
        names = ["fast"] if intpath.never_overflows(config.int_datapath, k or 0) else []
        return [Tier(name, True) for name in names + ["tiled", "faithful"]]
    if config.float_datapath.align_bits is not None:
        return [Tier("faithful", True)]
    return [Tier("tiled", True) if exact else Tier("fast", False)]


def matmul_tier(config: AcceleratorConfig | str, exact: bool = True, *, k: int | None = None) -> Tier:
    """The tier ``emulated_matmul(..., config, exact)`` uses.

    For integer datapaths the choice can depend on K (the accumulator may overflow only for long
    products): pass the product's ``k``; None gives the tier of products short enough never to
    overflow the accumulator.
    """
    return _tiers(AcceleratorConfig.load(config), exact, k)[0]


def emulated_matmul(a: torch.Tensor, b: torch.Tensor, config: AcceleratorConfig | str, exact: bool = True, *,
                    a_scale: torch.Tensor | None = None, b_scale: torch.Tensor | None = None,
                    tier: str | None = None) -> torch.Tensor:
    """``a @ b`` on the emulated datapath of ``config``, as float32.

    a: (..., M, K), the first operand (activations; the one an integer datapath leading-one
    truncates); b: (K, N) or (..., K, N) with batch dims broadcastable to a's. ``exact=True``
    uses only tiers bit-identical to ``golden.matmul``. ``tier`` forces one of the tiers
    available for the config (integer datapaths: ``tiled``/``faithful`` always, ``fast`` where
    exact); None picks ``matmul_tier(config, exact, k=K)``.

    Integer datapaths: ``a_scale`` is the per-tensor activation scale (0-d, e.g. from
    calibration) or None for ``max|a| / qmax``; ``b_scale`` is per output column (shape (N,)) or
    per tensor (0-d), or None for one scale per column of b (of each matrix of a batched b).
    Scales are used as float32. Float datapaths take no scales.
    """
    config = AcceleratorConfig.load(config)
    _check_operands(a, b)
    tiers = _tiers(config, exact, a.shape[-1])
    chosen = tiers[0] if tier is None else next((t for t in tiers if t.name == tier), None)
    if chosen is None:
        raise ValueError(f"tier: value {tier!r} is not available for config {config.name!r} with exact={exact} "
                         f"and K={a.shape[-1]}; choose one of {[t.name for t in tiers]} or None")
    if config.datapath == "native":
        return torch.matmul(a.float(), b.float())
    if config.datapath == "int":
        return _int_matmul(a, b, config.int_datapath, chosen.name, a_scale, b_scale)
    if a_scale is not None or b_scale is not None:
        raise ValueError(f"a_scale/b_scale are for integer datapaths; config {config.name!r} is a float datapath")
    return _float_matmul(a, b, config.float_datapath, chosen)


def _check_operands(a: torch.Tensor, b: torch.Tensor) -> None:
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.is_complex() or not t.dtype.is_floating_point:
            raise TypeError(f"{name} must be a real floating-point tensor, got dtype {t.dtype}")
        if t.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dims (..., rows, cols), got shape {tuple(t.shape)}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"a (..., M, K) and b (..., K, N) disagree on K: a is {tuple(a.shape)}, b is {tuple(b.shape)}")


def fast_error_bound(qa: torch.Tensor, qb: torch.Tensor, group_size: int) -> torch.Tensor:
    """Bound on |fast - golden| for rounded operands qa, qb (the ``exact=False`` contract).

    Both differ from the exact dot product by float32 accumulation error only:
    |fast - exact| <= gamma(K) * sum|a_i b_i| (any BLAS order) and
    |golden - exact| <= gamma(ceil(K/G) + 1) * sum|a_i b_i|, gamma(n) = n u / (1 - n u), u = 2^-24.
    Products are exact in both (FMA or not), so nothing else differs.
    """
    k = qa.shape[-1]
    u = 2.0 ** -24
    gamma = lambda n: n * u / (1 - n * u)  # noqa: E731
    total = gamma(k) + gamma(math.ceil(k / group_size) + 1)
    return total * torch.matmul(qa.double().abs(), qb.double().abs())


def _float_matmul(a: torch.Tensor, b: torch.Tensor, fp: FloatDatapath, tier: Tier) -> torch.Tensor:
    fa, fb = FloatFormat.named(fp.a_format), FloatFormat.named(fp.b_format)
    qa = fa.quantize(a if a.dtype == torch.float64 else a.float(), fp.operand_rounding)
    qb = fb.quantize(b if b.dtype == torch.float64 else b.float(), fp.operand_rounding)
    if tier.name == "fast" or 0 in (*qa.shape, *qb.shape):  # empty operands: zeros (K = 0) or empty
        return torch.matmul(qa, qb)

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

    faithful = tier.name == "faithful"
    make = _aligned_group_sums if faithful else _tiled_group_sums
    group_sums = _with_specials(Ag, Bg, lambda finite_a, finite_b: make(finite_a, finite_b, fa, fb, fp))
    # bytes per row of a chunk: faithful holds each product and its aligned integer, tiled a few
    # float64 copies of one group's sums
    per_row = A.shape[0] * n * (g * (8 if _aligned_dtype(fa, fb, fp) == torch.float32 else 16) if faithful else 8 * 4)
    rows = max(1, min(m, CHUNK_BYTES // per_row))
    out = torch.empty(A.shape[0], m, n, dtype=torch.float32, device=a.device)
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        acc = torch.zeros(A.shape[0], r1 - r0, n, dtype=torch.float32, device=a.device)
        for gi in range(ng):  # the float32 accumulator, in K order: each group sum rounded as it is added
            acc.add_(group_sums(r0, r1, gi).float())
        out[:, r0:r1] = acc
    return out.reshape(*batch, m, n)


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


def _tiled_group_sums(A: torch.Tensor, B: torch.Tensor, fa: FloatFormat, fb: FloatFormat,
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
    Bx = B.expand(A.shape[0], *B.shape[1:])
    wide_rows = _span(A, dim=-1) > half_a                                           # (Bt, M, ng)
    wide_cols = (_span(B, dim=-2) > budget - half_a).expand(A.shape[0], -1, -1)     # (Bt, ng, N)
    row_groups = set(wide_rows.any(dim=1).any(dim=0).nonzero().flatten().tolist())
    col_groups = {gi: wide_cols[:, gi].nonzero().unbind(1)                        # gi -> (b, j) of wide columns
                  for gi in wide_cols.any(dim=2).any(dim=0).nonzero().flatten().tolist()}

    def exact_fn(r0: int, r1: int, gi: int) -> torch.Tensor:
        Ac = A[:, r0:r1, gi]                                                        # (Bt, rows, G)
        out = torch.matmul(Ac.double(), B64[:, gi])  # exact where spans allow
        if gi in row_groups:
            b, i = wide_rows[:, r0:r1, gi].nonzero().unbind(1)
            if len(b):
                out[b, i] = _banded_sums(Ac[b, i].unsqueeze(1), Bx[b, gi], fa, fb, fp)[:, 0].double()
        if gi in col_groups:
            b, j = col_groups[gi]
            out[b, :, j] = _banded_sums(Ac[b], Bx[b, gi, :, j].unsqueeze(-1), fa, fb, fp)[..., 0].double()
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


def _banded_sums(A: torch.Tensor, B: torch.Tensor, fa: FloatFormat, fb: FloatFormat,
                 fp: FloatDatapath) -> torch.Tensor:
    """Exact float32 group sums of finite A @ B by exponent bands: each band pair sums exactly in
    float64; band results are combined in two exact limbs and rounded once."""
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
    if not floatpath.ExactSum.fits(q_min, p_max, terms):
        return _golden_group_sums(A, B, fa, fb, fp)
    acc = floatpath.ExactSum(q_min, p_max, terms)
    for band_a in bands_a:
        for band_b in bands_b:
            acc.add(torch.matmul(band_a, band_b))
    return acc.result()


def _exp_range(x: torch.Tensor) -> tuple[int, int] | None:
    """(min, max) of floor(log2|x|) over nonzero entries, or None if all are zero."""
    nz = x[x != 0]
    if nz.numel() == 0:
        return None
    e = floatpath.exponent(nz)
    return int(e.min()), int(e.max())


def _bands(x: torch.Tensor, e_lo: int, width: int) -> list[torch.Tensor]:
    """float64 copies of x holding only the entries whose exponent lies in one band each."""
    x64 = x.double()
    idx = torch.div(floatpath.exponent(x) - e_lo, width + 1, rounding_mode="floor")
    idx = torch.where(x == 0, -1, idx)
    present = torch.unique(idx[idx >= 0]).tolist()
    if len(present) == 1:
        return [x64]
    return [torch.where(idx == i, x64, 0.0) for i in present]


def _aligned_group_sums(A: torch.Tensor, B: torch.Tensor, fa: FloatFormat, fb: FloatFormat,
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
        return floatpath.round_pair_to_float32((total - low).double() * scale, low.double() * scale)

    return exact_fn


def _aligned_dtype(fa: FloatFormat, fb: FloatFormat, fp: FloatDatapath) -> torch.dtype:
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


def _golden_group_sums(A: torch.Tensor, B: torch.Tensor, fa, fb, fp) -> torch.Tensor:
    """Exact group sums for data whose exponent span defeats two float64 limbs (wide formats only)."""
    from fractions import Fraction

    from vitaccel.arith import golden

    warnings.warn("operand exponents span more than two float64 limbs; this chunk runs on the scalar "
                  "golden model (exact, slow)", RuntimeWarning, stacklevel=3)
    batch = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    A3 = A.expand(*batch, *A.shape[-2:]).reshape(-1, *A.shape[-2:]).double().tolist()
    B3 = B.expand(*batch, *B.shape[-2:]).reshape(-1, *B.shape[-2:]).double().tolist()
    out = [[[golden.to_float(golden.round_real(
        sum((Fraction(x) * Fraction(col[j]) for j, x in enumerate(row)), Fraction(0)), *golden.F32[:2], golden.F32_MAX))
        for col in zip(*b)] for row in a] for a, b in zip(A3, B3)]
    return torch.tensor(out, dtype=torch.float64).float().reshape(*batch, A.shape[-2], B.shape[-1])


# -- integer datapath -----------------------------------------------------------------------------
def _float32_matmul_is_ieee(device: torch.device) -> bool:
    """True when float32 matmuls on ``device`` run in IEEE float32 (no TF32/bf16 shortcuts)."""
    backend = torch.backends.cuda.matmul if device.type == "cuda" else torch.backends.mkldnn.matmul
    own = getattr(backend, "fp32_precision", "none")
    return torch.get_float32_matmul_precision() == "highest" and own in ("none", "ieee")


def _int_scales(a: torch.Tensor, b: torch.Tensor, dp: IntDatapath, a_scale: torch.Tensor | None,
                b_scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 operand scales as ``emulated_matmul`` uses them (after the weight-scale codec)."""
    a_max = intpath.finite_abs_max(a, "a")
    b_max = intpath.finite_abs_max(b, "b", dim=-2)
    if a_scale is None:
        sa = intpath.scale_from_max(a_max, dp.a_bits)
    else:
        sa = intpath.check_scale(a_scale, "a_scale")
        if sa.numel() != 1:
            raise ValueError(f"a_scale must be one per-tensor scale (0-d), got shape {tuple(a_scale.shape)}")
        sa = sa.reshape(())
    n = b.shape[-1]
    if b_scale is None:
        sb = intpath.scale_from_max(b_max, dp.b_bits)
    else:
        sb = intpath.check_scale(b_scale, "b_scale")
        if sb.shape not in ((), (n,)):
            raise ValueError(f"b_scale must be per tensor (0-d) or per output column (shape ({n},)), "
                             f"got shape {tuple(b_scale.shape)}")
    codec = dp.weight_scale_codec()
    if codec is not None:
        sb = codec.apply(sb)
        if not bool((sb > 0).all()):
            raise ValueError("int_datapath.scale_codec rounds a weight scale to 0; raise the codec's bias "
                             "so that its smallest step lies below the smallest scale")
    return sa, sb


def _int_matmul(a: torch.Tensor, b: torch.Tensor, dp: IntDatapath, tier: str, a_scale: torch.Tensor | None,
                b_scale: torch.Tensor | None) -> torch.Tensor:
    a, b = a.float(), b.float()
    if a.numel() == 0 or b.numel() == 0:     # no product is formed: every (empty) sum is 0
        shape = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        return a.new_zeros(shape)
    sa, sb = _int_scales(a, b, dp, a_scale, b_scale)
    fp32 = _float32_matmul_is_ieee(a.device)
    work = torch.float32 if fp32 else torch.float64
    if dp.keep_bits is None:
        qa = intpath.quantize_with_scale(a, sa, dp.a_bits, work)
    else:                    # truncation by table lookup at index q + qmax
        table = intpath.truncation_table(dp.a_bits, dp.keep_bits, dp.keep_rounding).to(a.device, work)
        qa = table[intpath.quantize_with_scale(a, sa, dp.a_bits).add_(intpath.qmax(dp.a_bits)).long()]
    qb = intpath.quantize_with_scale(b, sb, dp.b_bits, work)

    batch = torch.broadcast_shapes(qa.shape[:-2], qb.shape[:-2])
    m, k, n = qa.shape[-2], qa.shape[-1], qb.shape[-1]
    if qb.dim() == 2:        # one weight matrix: batch rows together
        A, B = qa.reshape(-1, k), qb
    else:
        A, B = qa.expand(*batch, m, k).reshape(-1, m, k), qb.expand(*batch, k, n).reshape(-1, k, n)
    pmax = intpath.product_max(dp)
    if tier == "fast":
        acc = _int_products(A, B, pmax, fp32)
    elif tier == "tiled":
        step = intpath.step_length(dp, k, fp32)
        dtype = intpath.accumulator_dtype(dp, step, fp32)
        acc = intpath.accumulate(lambda k0, k1: _int_products(A[..., k0:k1], B[..., k0:k1, :], pmax, fp32).to(dtype),
                                 k, dp, A.new_zeros(A.shape[:-1] + (n,), dtype=dtype), step)
    else:
        acc = _faithful_int(A, B, dp)
    return _dequantize(acc.reshape(*batch, m, n), sa.double() * sb.double())


def _dequantize(acc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``float32(float64(acc) * scale)`` (+0 for zero), in place in ``acc`` (this module's own).

    When one scale row serves every row, float32 rows pass through a small float64 buffer: the
    same two roundings without full-size float64 temporaries (which cost more than the matmul's
    share on a busy host).
    """
    if acc.dtype != torch.float32 or scale.dim() > 2 or (scale.dim() == 2 and scale.shape[0] != 1):
        return acc.double().mul_(scale).float().add_(0.0)
    rows = acc.view(-1, acc.shape[-1])
    step = max(1, 2 ** 16 // max(rows.shape[1], 1))
    buffer = rows.new_empty((min(step, rows.shape[0]), rows.shape[1]), dtype=torch.float64)
    scale = scale.reshape(-1)
    for r0 in range(0, rows.shape[0], step):
        chunk = rows[r0:r0 + step]
        chunk.copy_(buffer[:chunk.shape[0]].copy_(chunk).mul_(scale))
    return acc.add_(0.0)


def _int_products(A: torch.Tensor, B: torch.Tensor, pmax: int, fp32: bool) -> torch.Tensor:
    """Exact ``A @ B`` of integer-valued operands: float32 matmuls over K chunks whose sums stay
    below 2^24 (added in float64 when there are several), or one float64 matmul."""
    k = A.shape[-1]
    if not fp32:
        return torch.matmul(A.double(), B.double())
    chunk = max(1, intpath.FLOAT32_EXACT // pmax)
    if k <= chunk:
        return torch.matmul(A, B)
    total = torch.matmul(A[..., :chunk], B[..., :chunk, :]).double()
    for k0 in range(chunk, k, chunk):
        total += torch.matmul(A[..., k0:k0 + chunk], B[..., k0:k0 + chunk, :])
    return total


def _faithful_int(A: torch.Tensor, B: torch.Tensor, dp: IntDatapath) -> torch.Tensor:
    """Every group's products materialised (float64, exact) and summed, rows in bounded chunks."""
    g, k, n = dp.group_size, A.shape[-1], B.shape[-1]
    A64, B64 = A.double(), B.double()
    out = A64.new_empty(A.shape[:-1] + (n,))
    per_row = max(1, A.numel() // (A.shape[-2] * k)) * g * n * 8
    rows = max(1, CHUNK_BYTES // per_row)
    for r0 in range(0, A.shape[-2], rows):
        Ar = A64[..., r0:r0 + rows, :]

        def sums(k0: int, k1: int) -> torch.Tensor:
            return (Ar[..., k0:k1].unsqueeze(-1) * B64[..., k0:k1, :].unsqueeze(-3)).sum(dim=-2)

        out[..., r0:r0 + rows, :] = intpath.accumulate(sums, k, dp, Ar.new_zeros(Ar.shape[:-1] + (n,)), g)
    return out
