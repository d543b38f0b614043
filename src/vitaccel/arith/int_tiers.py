"""The integer tiers of ``emulated_matmul`` (DESIGN.md section 6) and their planning.

Operands are converted to float32, quantised (``intpath`` module docstring), the first one
leading-one truncated (a table lookup), and the integer dot products run as

* ``fast``     one native matmul of float tensors holding the integers, when ``never_overflows``
               proves the plain sum is the datapath's result (no storage codec, no dropped LSBs,
               group sums within ``psum_bits`` and ``K * max|product| <= 2^(acc_bits-1) - 1``).
               Exact because every partial sum is an integer of magnitude at most
               ``K * max|product|``: float32 holds them all below 2^24 (8 x 8 bits: K <= 1040 per
               float32 matmul; longer K is cut into such chunks whose results are added in
               float64), float64 below 2^53 (8 x 8 bits: K <= 2^39). float32 is used only while
               the host's float32 matmul is IEEE (no TF32/bf16).
* ``tiled``    one native matmul per ``tile_k`` slice (or per group when the adder tree can change
               group sums), then partial-sum rounding, overflow and the storage codec elementwise
               (``accumulate``).
* ``faithful`` the products of every group materialised in bounded chunks and summed, then the
               same elementwise steps: an independent check of ``tiled``, and its speed reference.

The activation scale is one per tensor or, with ``activation_scale: per_token``, one per row of a
(``max|row| / qmax``; 1 for a zero row), shape (..., M, 1).

Dequantisation: ``float32(float64(acc) * (float64(a_scale) * float64(b_scale)))``: the scale
product is exact (two float32 significands), then one float64 rounding, then one float32 rounding
(nearest even both); a zero result is +0.
"""

from __future__ import annotations

from typing import Callable

import torch

from vitaccel.arith import intpath
from vitaccel.arith.config import ZERO_WEIGHT_SCALE, IntDatapath
from vitaccel.arith.psum import TruncCodec
from vitaccel.errors import UserError

# Working set of one row chunk of the tiled tier (bytes): a step's sums and the accumulator of the
# chunk, kept within a core's L2 cache (the elementwise register steps then read cached data).
TILED_CHUNK_BYTES = 2 ** 20


def product_max(dp: IntDatapath) -> int:
    """Largest |product| the multiplier can form: max |truncated a| * intpath.qmax(b_bits)."""
    a_max = intpath.qmax(dp.a_bits)
    if dp.keep_bits is not None:
        a_max = int(intpath.truncation_table(dp.a_bits, dp.keep_bits, dp.keep_rounding).abs().max())
    return a_max * intpath.qmax(dp.b_bits)


def partial_sum_(group_sum: torch.Tensor, dp: IntDatapath) -> torch.Tensor:
    """In place: an exact adder-tree group sum as its ``psum_bits`` register keeps it (low bits
    dropped, then overflow), in units of ``2^psum_drop_lsbs``."""
    d = dp.psum_drop_lsbs
    kept = intpath.drop_lsbs_(group_sum, d, dp.psum_rounding)
    if dp.psum_bits is not None and (dp.group_size * product_max(dp) >> d) + 2 > intpath.qmax(dp.psum_bits):
        intpath.overflow_(kept, dp.psum_bits, dp.overflow)  # (skipped where no kept value can leave the range)
    return kept


def group_passes_unchanged(dp: IntDatapath) -> bool:
    """True when no group sum can be changed by the adder tree's register (no drop, no overflow)."""
    if dp.psum_drop_lsbs:
        return False
    return dp.psum_bits is None or dp.group_size * product_max(dp) <= intpath.qmax(dp.psum_bits)


def never_overflows(dp: IntDatapath, k: int) -> bool:
    """True when a K-long dot product is the plain exact sum: nothing dropped, stored or overflowing."""
    storage = dp.psum_storage is not None and dp.psum_storage.codec is not None
    return not storage and group_passes_unchanged(dp) and k * product_max(dp) <= intpath.qmax(dp.acc_bits)


def _group_bound(dp: IntDatapath) -> int:
    """Upper bound on |partial_sum| of one group."""
    raw = dp.group_size * product_max(dp) + (2 ** dp.psum_drop_lsbs if dp.psum_drop_lsbs else 0)
    if dp.psum_bits is None:
        return raw
    return min(raw, 2 ** (dp.psum_bits - 1 + dp.psum_drop_lsbs))


def step_length(dp: IntDatapath, k: int, float32: bool) -> int:
    """K elements per native sum in the tiled tier: one group when the adder tree changes group
    sums, one storage tile when partial sums are stored, else as many as stay exact."""
    g = dp.group_size
    if not group_passes_unchanged(dp):
        return g
    if dp.psum_storage is not None:
        return dp.psum_storage.tile_k
    limit = intpath.FLOAT32_EXACT if float32 else intpath.FLOAT64_EXACT
    return max(g, min(k, limit // product_max(dp)) // g * g)


def accumulator_dtype(dp: IntDatapath, step: int, float32: bool) -> torch.dtype:
    """float32 when every value the accumulator loop forms stays an exact float32 integer."""
    acc = 2 ** (dp.acc_bits - 1)
    peak = acc + max(step * product_max(dp), _group_bound(dp) + dp.group_size * product_max(dp))
    if dp.overflow == "wrap":
        peak += acc
        if dp.psum_bits is not None:  # wrapping a group sum adds half the register's range to it
            peak = max(peak, 2 ** (dp.psum_bits - 1) + _group_bound(dp) + dp.group_size * product_max(dp))
    return torch.float32 if float32 and peak <= intpath.FLOAT32_EXACT else torch.float64


def accumulate(sums: Callable[[int, int], torch.Tensor], k: int, dp: IntDatapath, acc: torch.Tensor,
               step: int) -> torch.Tensor:
    """The adder tree and accumulator over K, in K order, from exact sums of products.

    ``sums(k0, k1)`` is the exact sum of the products of elements k0..k1-1: a fresh tensor (it is
    modified) shaped like ``acc``, the zero accumulator in its working dtype (updated in place).
    With ``step == group_size`` every group goes through ``partial_sum_`` and the accumulator's
    overflow rule one by one; with longer steps (only when group sums pass unchanged) whole
    steps are added at once where that is provably the same: no overflow possible (a running
    bound), ``wrap`` (modular sums), or a ``saturate`` guard on the accumulator's current
    maximum; otherwise the step is redone per group. Every ``tile_k`` elements with more K to
    come, the accumulator goes through the storage codec (and its overflow rule if the decoded
    value may exceed the range).
    """
    g = dp.group_size
    acc_max = intpath.qmax(dp.acc_bits)
    codec = dp.psum_codec()
    tile = dp.psum_storage.tile_k if dp.psum_storage is not None else None
    pmax = product_max(dp)
    bound = 0                                              # upper bound on |acc|
    wait = 0                                               # groups before the bound is re-measured
    # a storage codec that only drops bits the adder tree already dropped changes nothing while
    # the accumulator holds multiples of 2^psum_drop_lsbs (saturating at the top end breaks that)
    no_op_codec = (isinstance(codec, TruncCodec) and step == g and codec.drop_bits <= dp.psum_drop_lsbs)

    def add(acc: torch.Tensor, s: torch.Tensor, s_bound: int, unit: int = 1) -> tuple[torch.Tensor, int]:
        """acc + s * unit (exact: unit is a power of two), then the accumulator's overflow rule."""
        nonlocal no_op_codec
        if bound + s_bound <= acc_max:
            return acc.add_(s, alpha=unit), bound + s_bound
        no_op_codec = no_op_codec and dp.overflow == "wrap"   # wrapping keeps multiples of 2^d
        return intpath.overflow_(acc.add_(s, alpha=unit), dp.acc_bits, dp.overflow), acc_max + 1

    for k0 in range(0, k, step):
        k1 = min(k0 + step, k)
        if step == g:
            if bound + _group_bound(dp) > acc_max and acc.numel():
                if wait == 0:   # re-measure: the running bound grows far faster than |acc| does
                    lo, hi = torch.aminmax(acc)
                    bound = min(bound, int(max(-lo, hi)))
                    wait = 0 if bound + 2 * _group_bound(dp) <= acc_max else 8  # near the edge: clamp a while
                else:
                    wait -= 1
            acc, bound = add(acc, partial_sum_(sums(k0, k1), dp), _group_bound(dp), 2 ** dp.psum_drop_lsbs)
        elif bound + (k1 - k0) * pmax <= acc_max or dp.overflow == "wrap":
            acc, bound = add(acc, sums(k0, k1), (k1 - k0) * pmax)
        else:
            top = int(acc.abs().amax()) if acc.numel() else 0
            if top + (k1 - k0) * pmax <= acc_max:          # no prefix of this step can saturate
                acc, bound = acc.add_(sums(k0, k1)), top + (k1 - k0) * pmax
            else:
                for g0 in range(k0, k1, g):
                    bound = acc_max + 1
                    acc = intpath.overflow_(acc.add_(sums(g0, min(g0 + g, k1))), dp.acc_bits, dp.overflow)
        if codec is not None and k1 % tile == 0 and k1 < k and not no_op_codec:
            acc = codec.apply_(acc)                        # |acc| <= 2^(acc_bits-1) <= codec.max_value
            bound = int(codec.apply(torch.tensor(float(bound), dtype=torch.float64)))
            if bound > acc_max:
                acc, bound = intpath.overflow_(acc, dp.acc_bits, dp.overflow), acc_max + 1
    return acc


def _float32_matmul_is_ieee(device: torch.device) -> bool:
    """True when float32 matmuls on ``device`` run in IEEE float32 (no TF32/bf16 shortcuts)."""
    backend = torch.backends.cuda.matmul if device.type == "cuda" else torch.backends.mkldnn.matmul
    own = getattr(backend, "fp32_precision", "none")
    return torch.get_float32_matmul_precision() == "highest" and own in ("none", "ieee")


def _int_scales(a: torch.Tensor, b: torch.Tensor, dp: IntDatapath, a_scale: torch.Tensor | None,
                b_scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 operand scales as ``emulated_matmul`` uses them (after the weight-scale codec)."""
    per_token = dp.activation_scale == "per_token"
    a_max = intpath.finite_abs_max(a, "a", dim=-1 if per_token else None)
    b_max = intpath.finite_abs_max(b, "b", dim=-2)
    if per_token and a_scale is not None:
        raise UserError("a_scale: a per_token datapath (int_datapath.activation_scale) scales each row of a by "
                         "max|row| / qmax on the fly; pass a_scale=None")
    if a_scale is None:
        sa = intpath.scale_from_max(a_max, dp.a_bits)
    else:
        sa = intpath.check_scale(a_scale, "a_scale")
        if sa.numel() != 1:
            raise UserError(f"a_scale must be one per-tensor scale (0-d), got shape {tuple(a_scale.shape)}")
        sa = sa.reshape(())
    n = b.shape[-1]
    if b_scale is None:
        sb = intpath.scale_from_max(b_max, dp.b_bits)
    else:
        sb = intpath.check_scale(b_scale, "b_scale")
        if sb.shape not in ((), (n,)):
            raise UserError(f"b_scale must be per tensor (0-d) or per output column (shape ({n},)), "
                             f"got shape {tuple(b_scale.shape)}")
    codec = dp.weight_scale_codec()
    if codec is not None:
        sb = codec.apply(sb)
        if not bool((sb > 0).all()):
            raise UserError(ZERO_WEIGHT_SCALE)
    return sa, sb


def int_matmul(a: torch.Tensor, b: torch.Tensor, dp: IntDatapath, tier: str, a_scale: torch.Tensor | None,
               b_scale: torch.Tensor | None, chunk_bytes: int) -> torch.Tensor:
    """``a @ b`` on the integer datapath ``dp`` in ``tier`` (fast, tiled or faithful), as float32;
    the faithful tier works in row chunks of about ``chunk_bytes`` (at least one row)."""
    a, b = a.float(), b.float()
    if a.numel() == 0 or b.numel() == 0:     # no product is formed: every (empty) sum is 0
        shape = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        return a.new_zeros(shape)
    sa, sb = _int_scales(a, b, dp, a_scale, b_scale)
    pmax = product_max(dp)
    fp32 = _float32_matmul_is_ieee(a.device) and pmax <= intpath.FLOAT32_EXACT  # float32 holds every product
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
    if tier == "fast":
        acc = _int_products(A, B, pmax, fp32)
    elif tier == "tiled":
        step = step_length(dp, k, fp32)
        dtype = accumulator_dtype(dp, step, fp32)
        # group by group, rows in chunks whose sums and accumulator stay in cache: one native
        # matmul per group writes a chunk's sums, and the register steps read them back at once
        # (longer steps amortise their elementwise work over more K and run on whole rows)
        per_row = max(1, A.numel() // (A.shape[-2] * k)) * n * dtype.itemsize * 2
        rows = max(1, min(chunk_bytes, TILED_CHUNK_BYTES) // per_row) if step == dp.group_size else A.shape[-2]
        chunks = []
        for r0 in range(0, A.shape[-2], rows):
            Ar = A[..., r0:r0 + rows, :]

            def sums(k0: int, k1: int, Ar: torch.Tensor = Ar) -> torch.Tensor:
                return _int_products(Ar[..., k0:k1], B[..., k0:k1, :], pmax, fp32).to(dtype)

            chunks.append(accumulate(sums, k, dp, Ar.new_zeros(Ar.shape[:-1] + (n,), dtype=dtype), step))
        acc = chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=-2)
    else:
        acc = _faithful_int(A, B, dp, chunk_bytes)
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


def _faithful_int(A: torch.Tensor, B: torch.Tensor, dp: IntDatapath, chunk_bytes: int) -> torch.Tensor:
    """Every group's products materialised (float64, exact) and summed, rows in bounded chunks."""
    g, k, n = dp.group_size, A.shape[-1], B.shape[-1]
    A64, B64 = A.double(), B.double()
    out = A64.new_empty(A.shape[:-1] + (n,))
    per_row = max(1, A.numel() // (A.shape[-2] * k)) * g * n * 8
    rows = max(1, chunk_bytes // per_row)
    for r0 in range(0, A.shape[-2], rows):
        Ar = A64[..., r0:r0 + rows, :]

        def sums(k0: int, k1: int, Ar: torch.Tensor = Ar) -> torch.Tensor:
            return (Ar[..., k0:k1].unsqueeze(-1) * B64[..., k0:k1, :].unsqueeze(-3)).sum(dim=-2)

        out[..., r0:r0 + rows, :] = accumulate(sums, k, dp, Ar.new_zeros(Ar.shape[:-1] + (n,)), g)
    return out
