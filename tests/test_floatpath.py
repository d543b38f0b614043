"""The FP13 datapath and emulated_matmul's float tiers against the golden model."""

import math
import warnings
from fractions import Fraction

import pytest
import torch

from conftest import same_bits
from vitaccel.arith import (
    FP13,
    AcceleratorConfig,
    FloatFormat,
    emulated_matmul,
    fast_error_bound,
    float_tiers,
    floatpath,
    golden,
    matmul_tier,
)
from vitaccel.configtools import ConfigError
from vitaccel.errors import UserError

EXACT_PRESETS = ["fp13", "fp13-align16", "fp16", "bf16"]


def test_multiplier_forms_agree_on_every_pair_of_8bit_significands():
    a = torch.arange(256).repeat_interleave(256)
    b = torch.arange(256).repeat(256)
    direct = floatpath.multiply_significands(a, b)
    assert torch.equal(direct, floatpath.multiply_significands(a, b, nibbles=True))
    assert torch.equal(direct, a * b) and int(direct.max()) < 2 ** 16


def test_fp13_multiplier_is_exact_on_all_codes_of_one_sign():
    """Every pair of finite FP13 magnitudes (a quarter of all code pairs) times sign cases."""
    codes = torch.arange(FP13.max_code + 1)
    a = codes.repeat_interleave(len(codes))[::7]  # a deterministic 1/7 sample keeps it quick
    b = codes.repeat(len(codes))[::7]
    for sa, sb in [(0, 0), (1, 0)]:
        ca, cb = a | (sa << 12), b | (sb << 12)
        got = floatpath.multiply(FP13, ca, FP13, cb, nibbles=True)
        expected = FP13.decode(ca).double() * FP13.decode(cb).double()  # exact in float64
        assert same_bits(got, expected)


def test_round_pair_to_float32_is_correctly_rounded():
    g = torch.Generator().manual_seed(0)
    hi = torch.randn(20000, generator=g, dtype=torch.float64) * 2.0 ** torch.randint(-60, 60, (20000,), generator=g)
    lo = torch.randn(20000, generator=g, dtype=torch.float64) * hi.abs() * 2.0 ** -40
    # exact float32 ties and near-ties: hi a float32 midpoint, lo a tiny nudge either way
    x = torch.randn(2000, generator=g)
    mid = (x.double() + torch.nextafter(x, torch.tensor(math.inf)).double()) / 2  # exact midpoints
    hi = torch.cat([hi, mid, mid, mid])
    lo = torch.cat([lo, torch.zeros(2000, dtype=torch.float64), mid.abs() * 2.0 ** -70, -mid.abs() * 2.0 ** -70])
    got = floatpath.round_pair_to_float32(hi, lo)
    expected = torch.tensor([golden.to_float(golden.round_real(Fraction(h) + Fraction(lw), *golden.F32[:2],
                                                               golden.F32_MAX))
                             for h, lw in zip(hi.tolist(), lo.tolist())], dtype=torch.float64).float()
    assert same_bits(got, expected)


def _operands(m, k, n, seed, batch=(), b_batch=None):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(*batch, m, k, generator=g) * torch.exp(torch.randn(*batch, m, k, generator=g) * 3)
    b = torch.randn(*(b_batch if b_batch is not None else ()), k, n, generator=g)
    return a, b


@pytest.mark.parametrize("preset", EXACT_PRESETS)
@pytest.mark.parametrize("shape", [(3, 37, 5), (2, 16, 4), (1, 1, 1), (4, 70, 3)])
def test_exact_matmul_equals_golden(preset, shape):
    config = AcceleratorConfig.preset(preset)
    a, b = _operands(*shape, seed=sum(shape))
    a.view(-1)[::5] = 0.0                  # zeros
    a.view(-1)[1::7] *= 2.0 ** -20         # FP13 subnormals and underflow to zero
    b.view(-1)[::3] *= 2.0 ** 12           # products near FP13's top
    assert same_bits(emulated_matmul(a, b, config), golden.matmul(a, b, config))


@pytest.mark.parametrize("preset", ["fp13", "fp13-align16"])
def test_exact_matmul_batched_and_broadcast(preset):
    config = AcceleratorConfig.preset(preset)
    a, b = _operands(3, 20, 4, seed=1, batch=(2, 2), b_batch=(2, 1))
    got = emulated_matmul(a, b, config)
    bb = b.expand(2, 2, 20, 4)
    for i in range(2):
        for j in range(2):
            assert same_bits(got[i, j], golden.matmul(a[i, j], bb[i, j], config))
    a2, b2 = _operands(3, 20, 4, seed=2, batch=(2,))
    got2 = emulated_matmul(a2, b2, config)
    assert same_bits(got2, golden.matmul(a2, b2, config))


@pytest.mark.parametrize("preset", EXACT_PRESETS)
def test_exact_matmul_specials(preset):
    config = AcceleratorConfig.preset(preset)
    a, b = _operands(4, 33, 4, seed=3)
    a[0, 2] = math.inf          # inf * finite
    a[1, 3] = math.nan
    a[2, 5] = math.inf
    b[5, 1] = 0.0               # inf * 0 -> NaN in one column only
    a[3, 0], a[3, 1] = math.inf, -math.inf  # +inf and -inf in one group
    a[0, 32] = 1e6              # overflows FP13 to inf in the last (partial) group
    assert same_bits(emulated_matmul(a, b, config), golden.matmul(a, b, config))


def test_exact_matmul_extreme_exponent_spans():
    """Tiny and huge magnitudes together; bf16 beyond two float64 limbs runs on int64 limbs."""
    config = AcceleratorConfig.preset("fp13")
    a = torch.tensor([[65280.0, -2.0 ** -21, 3.0, -65280.0, 2.0 ** -14, 1.0]])
    b = torch.tensor([[65280.0], [2.0 ** -21], [2.0 ** -21], [65280.0], [2.0 ** -21], [-3.0]])
    assert same_bits(emulated_matmul(a, b, config), golden.matmul(a, b, config))
    bf16 = AcceleratorConfig.preset("bf16")
    a = torch.tensor([[1e38, 1e-38, -1e38, 3.0]])
    b = torch.tensor([[1e-30], [1e-38], [1e-30], [1e30]])
    assert same_bits(emulated_matmul(a, b, bf16), golden.matmul(a, b, bf16))


def _fraction_to_float32(v: Fraction) -> float:
    return golden.to_float(golden.round_real(v, *golden.F32[:2], golden.F32_MAX))


@pytest.mark.parametrize("seed", range(4))
def test_wide_sum_rounds_the_exact_total_once_over_any_span(seed):
    """``WideSum``: terms 52 bits wide each, placed anywhere in a 500-bit range, with cancellation
    (the top terms cancel, so low ones decide), float32 ties broken by a far-away term, subnormal
    and overflowing totals: the correctly rounded float32 of the exact sum, element by element."""
    g = torch.Generator().manual_seed(seed)
    q_min, p_max, n_terms, shape = -300, 200, 12, (400,)
    wide = floatpath.WideSum(q_min, p_max, n_terms)
    exact = [Fraction(0)] * shape[0]
    first_sig, first_q = torch.zeros(shape, dtype=torch.int64), 0
    for t in range(n_terms):
        q = int(torch.randint(q_min, p_max - 52, (1,), generator=g))
        sig = torch.randint(-2 ** 52, 2 ** 52, shape, generator=g, dtype=torch.int64)
        if t == 1:                        # cancel the first term in every entry but by 0 or 1 units
            q, sig = first_q, -first_sig + torch.randint(0, 2, shape, generator=g)
        term = sig.double() * 2.0 ** q
        wide.add(term, q, q + 53)
        exact = [e + Fraction(int(v)) * Fraction(2) ** q for e, v in zip(exact, sig.tolist())]
        if t == 0:
            first_sig, first_q = sig, q
    got = wide.result()
    assert same_bits(got, torch.tensor([_fraction_to_float32(v) for v in exact], dtype=torch.float64).float())


def test_wide_sum_ties_subnormals_and_overflow():
    """Crafted totals: a float32 tie decided by a term 2^-200 below it, a subnormal float32 total
    with sticky bits, a total beyond float32's max, exact cancellation to zero."""
    cases = [[2.0 ** 60, 2.0 ** 36, 2.0 ** -140], [2.0 ** 60, 2.0 ** 36, -(2.0 ** -140)],
             [2.0 ** -140, 2.0 ** -149 * 1.5, 2.0 ** -290], [2.0 ** 127, 2.0 ** 127 * 0.99, 2.0 ** -100],
             [2.0 ** 100, -(2.0 ** 100), 0.0], [-(2.0 ** 60), -(2.0 ** 36), 2.0 ** -140]]
    wide = floatpath.WideSum(-300, 130, 3)
    for t in range(3):
        wide.add(torch.tensor([c[t] for c in cases], dtype=torch.float64), -300, 130)
    expected = [_fraction_to_float32(sum((Fraction(v) for v in c), Fraction(0))) for c in cases]
    assert same_bits(wide.result(), torch.tensor(expected, dtype=torch.float64).float())
    assert wide.result()[0] == 2.0 ** 60 + 2.0 ** 37 and wide.result()[4] == 0


def test_operands_spanning_every_binade_run_vectorised_and_exact(monkeypatch):
    """Issue 14 defect 10: fp16 operands near 6e-8 and 4e4 in every row and column (bands beyond
    two float64 limbs), and bf16 over its whole range, equal golden through the int64 limbs."""
    calls = []
    real = floatpath.WideSum.result
    monkeypatch.setattr(floatpath.WideSum, "result", lambda self, odd=False: calls.append(1) or real(self, odd))
    g = torch.Generator().manual_seed(10)
    m, k, n = 9, 40, 7
    a = (torch.rand(m, k, generator=g) + 0.5) * (torch.randint(0, 2, (m, k), generator=g) * 2 - 1)
    b = (torch.rand(k, n, generator=g) + 0.5) * (torch.randint(0, 2, (k, n), generator=g) * 2 - 1)
    a[:, ::3] *= 6e-8
    a[:, 1::3] *= 4e4
    b[::3] *= 4e4
    b[1::3] *= 6e-8
    for name in ("fp16", "fp13"):
        assert same_bits(emulated_matmul(a, b, name), golden.matmul(a, b, name))
    a = torch.randn(m, k, generator=g) * 2.0 ** torch.randint(-133, 127, (m, k), generator=g).float()
    b = torch.randn(2, k, n, generator=g) * 2.0 ** torch.randint(-133, 0, (2, k, n), generator=g).float()
    assert same_bits(emulated_matmul(a, b, "bf16"), golden.matmul(a, b, "bf16"))
    assert len(calls) > 3


@pytest.mark.parametrize("rounding", ["toward_zero", "nearest_even"])
@pytest.mark.parametrize("align_bits", [0, 3, 9, 30])
def test_alignment_variants_equal_golden(align_bits, rounding):
    config = AcceleratorConfig.from_dict({"name": "t", "datapath": "float", "float_datapath": {
        "group_size": 4, "align_bits": align_bits, "align_rounding": rounding}})
    a, b = _operands(3, 13, 4, seed=align_bits)
    assert same_bits(emulated_matmul(a, b, config), golden.matmul(a, b, config))


@pytest.mark.parametrize("rounding", ["toward_zero", "nearest_even"])
def test_aligned_sums_beyond_2_to_53_round_once(rounding):
    """align_bits 48, G = 64: the aligned integers sum to about 2^55. Crafted so the exact sum is
    one unit above a float32 tie: a float64 sum drops that unit and rounds the tie to even."""
    config = AcceleratorConfig.from_dict({"name": "t", "datapath": "float", "float_datapath": {
        "group_size": 64, "align_bits": 48, "align_rounding": rounding}})
    a = torch.tensor([[15.875] * 62 + [2.0 ** -12, 2.0 ** -21]])  # products 127 (x62), 2^-12, 2^-42
    b = torch.tensor([[8.0] * 62 + [1.0, 2.0 ** -21]]).T
    got = emulated_matmul(a, b, config)
    assert same_bits(got, golden.matmul(a, b, config))
    assert got.item() == 7874 + 2.0 ** -11  # 62 * 127 plus the rounding decided by the last unit
    assert same_bits(emulated_matmul(-a, b, config), golden.matmul(-a, b, config))


def test_aligned_sums_that_could_overflow_64_bits_are_refused():
    with pytest.raises(ConfigError, match=r"float_datapath.align_bits: value 48 is not allowed with group_size 32768"):
        AcceleratorConfig.from_dict({"datapath": "float", "float_datapath": {"group_size": 2 ** 15, "align_bits": 48}})
    AcceleratorConfig.from_dict({"datapath": "float", "float_datapath": {"group_size": 2 ** 14, "align_bits": 48}})


@pytest.mark.parametrize("group_size", [1, 2, 8, 64])
def test_group_sizes_equal_golden(group_size):
    config = AcceleratorConfig.from_dict({"datapath": "float", "float_datapath": {"group_size": group_size,
                                                                                   "b_format": "e4m3"}})
    a, b = _operands(2, 45, 3, seed=group_size)
    assert same_bits(emulated_matmul(a, b, config), golden.matmul(a, b, config))


def test_inexact_tier_stays_within_documented_bound():
    config = AcceleratorConfig.preset("fp13")
    a, b = _operands(16, 300, 12, seed=4)
    fast = emulated_matmul(a, b, config, exact=False)
    exact = emulated_matmul(a, b, config, exact=True)
    assert matmul_tier(config, exact=False) == ("fast", False)
    qa, qb = FP13.quantize(a), FP13.quantize(b)
    bound = fast_error_bound(qa, qb, 16)
    err = (fast.double() - exact.double()).abs()
    assert bool((err <= bound).all())
    assert float(err.max()) > 0  # the bound is not vacuous: BLAS order does differ here


def test_inexact_tier_keeps_its_bound_where_float32_products_overflow_or_underflow():
    """Issue 14 defect 12: bf16 products beyond float32's range (3e38 * 2) or below its subnormals
    gave inf/NaN or lost bits; the fast tier forms them in float64, within the documented bound."""
    config = AcceleratorConfig.preset("bf16")
    a, b = torch.tensor([[3e38, 3e38]]), torch.tensor([[2.0], [-2.0]])
    assert same_bits(emulated_matmul(a, b, config, exact=False), golden.matmul(a, b, config))
    g = torch.Generator().manual_seed(12)
    a = torch.randn(6, 40, generator=g) * 2.0 ** torch.randint(-60, 60, (6, 40), generator=g).float()
    b = torch.randn(40, 5, generator=g) * 2.0 ** torch.randint(-60, 60, (40, 5), generator=g).float()
    a[0], b[:, 0] = 1e-30, 1e-15                                  # products below float32's subnormals
    a[1, :2], b[:2, 1] = 3e38, torch.tensor([2.0, -2.0])          # products beyond float32's max
    fast, exact = emulated_matmul(a, b, config, exact=False), emulated_matmul(a, b, config)
    qa, qb = FloatFormat.named("e8m7").quantize(a), FloatFormat.named("e8m7").quantize(b)
    finite = torch.isfinite(exact)
    assert bool(finite.any()) and torch.equal(torch.isfinite(fast), finite)
    err = (fast.double() - exact.double()).abs()
    assert bool((err[finite] <= fast_error_bound(qa, qb, 16)[finite]).all())


def test_native_preset_is_the_host_matmul():
    a, b = _operands(5, 40, 6, seed=5)
    assert torch.equal(emulated_matmul(a, b, "fp32"), a @ b)
    assert matmul_tier("fp32") == ("native", False)


def test_fp13_error_against_float32_is_what_its_precision_allows():
    a, b = _operands(32, 384, 48, seed=6)
    a = torch.randn(32, 384)
    y = emulated_matmul(a, b, "fp13")
    ref = a @ b
    sqnr = 10 * torch.log10(ref.pow(2).sum() / (y - ref).pow(2).sum())
    assert 40 < float(sqnr) < 60  # 8-bit significands: about 6 dB per bit


def test_bad_operands():
    with pytest.raises(TypeError, match="a must be a real floating-point tensor"):
        emulated_matmul(torch.ones(2, 2, dtype=torch.int32), torch.ones(2, 2), "fp13")
    with pytest.raises(ValueError, match="disagree on K"):
        emulated_matmul(torch.ones(2, 3), torch.ones(2, 2), "fp13")
    with pytest.raises(ValueError, match="at least 2 dims"):
        emulated_matmul(torch.ones(3), torch.ones(3, 2), "fp13")
    with pytest.raises(ValueError, match="integer datapaths"):
        emulated_matmul(torch.ones(2, 2), torch.ones(2, 2), "fp13", a_scale=torch.tensor(1.0))


def test_api_validation_gaps_are_closed():
    """Issue 14 defect 14: exact="no" was run as exact; scales with the native datapath were
    ignored; batch dims that do not broadcast raised torch's error naming neither operand; a dict
    config was looked up as a preset name."""
    a, b = torch.ones(2, 3), torch.ones(3, 2)
    for bad in ("no", 0, None):
        with pytest.raises(TypeError, match=r"exact must be a bool \(True or False\), got"):
            emulated_matmul(a, b, "fp13", exact=bad)
    for scale in ({"a_scale": torch.tensor(1.0)}, {"b_scale": torch.tensor(1.0)}):
        with pytest.raises(UserError, match="a_scale/b_scale are for integer datapaths; config 'fp32' is a native"):
            emulated_matmul(a, b, "fp32", **scale)
    with pytest.raises(UserError, match=r"batch dims of a \(2, 2, 3\) and b \(3, 3, 2\) do not broadcast: "
                                        r"\(2,\) against \(3,\)"):
        emulated_matmul(torch.ones(2, 2, 3), torch.ones(3, 3, 2), "fp13")
    with pytest.raises(UserError, match="chunk_bytes: value 0 is not allowed"):
        emulated_matmul(a, b, "fp13", chunk_bytes=0)
    config = {"datapath": "float", "float_datapath": {"group_size": 2}}
    x, y = _operands(3, 7, 2, seed=14)
    assert same_bits(emulated_matmul(x, y, config), golden.matmul(x, y, AcceleratorConfig.from_dict(config)))
    assert matmul_tier(config) == ("tiled", True)
    with pytest.raises(TypeError, match="config must be a preset name, a YAML path, a dict or an AcceleratorConfig"):
        emulated_matmul(a, b, 3)


@pytest.mark.parametrize("preset", ["fp13", "fp13-align16", "bf16", "int8", "int8-lot4-psum"])
@pytest.mark.parametrize("exact", [True, False])
def test_emulated_results_never_require_grad(preset, exact):
    """Issue 14 defect 14, the autograd contract: float and integer datapaths compute without
    autograd (integer ones used to return a graph, float ones none); the native one is torch.matmul."""
    a = torch.randn(4, 20, requires_grad=True)
    b = torch.randn(20, 3, requires_grad=True)
    out = emulated_matmul(a, b, preset, exact=exact)
    assert not out.requires_grad and out.grad_fn is None
    assert emulated_matmul(a, b, "fp32").requires_grad


def test_formats_of_both_operands_may_differ():
    config = AcceleratorConfig.from_dict({"datapath": "float", "float_datapath": {"a_format": "e5m7",
                                                                                   "b_format": "e4m3"}})
    a, b = _operands(3, 21, 2, seed=7)
    y = emulated_matmul(a, b, config)
    assert same_bits(y, golden.matmul(a, b, config))
    assert not same_bits(y, emulated_matmul(a, b, "fp13"))
    assert FloatFormat.named(config.float_datapath.b_format).max == 448.0


@pytest.mark.parametrize("preset", ["fp13", "fp13-align16"])
def test_tie_decided_by_a_product_float64_cannot_hold(preset):
    """2^25 + 2 is a float32 tie; the product 2^-40 decides it, 65 bits below: a plain float64
    sum loses it and rounds to even (2^25); the datapath's exact group sum rounds up."""
    a = torch.tensor([[2.0 ** 13, 2.0, 2.0 ** -20]])
    b = torch.tensor([[2.0 ** 12], [1.0], [2.0 ** -20]])
    got = emulated_matmul(a, b, preset)
    assert same_bits(got, golden.matmul(a, b, preset))
    if preset == "fp13":
        assert got.item() == 2.0 ** 25 + 4
        assert (a.double() @ b.double()).float().item() == 2.0 ** 25  # what naive float64 gives


@pytest.mark.parametrize("preset", ["fp13", "fp13-align16"])
@pytest.mark.parametrize("shapes", [((0, 5), (5, 3)), ((2, 0), (0, 3)), ((2, 5), (5, 0))])
def test_empty_operands(preset, shapes):
    a, b = torch.randn(*shapes[0]), torch.randn(*shapes[1])
    for exact in (True, False):
        got = emulated_matmul(a, b, preset, exact=exact)
        assert same_bits(got, torch.zeros(shapes[0][0], shapes[1][1]))
    assert FP13.quantize(torch.empty(0)).shape == (0,)


@pytest.mark.parametrize("preset", ["fp13", "fp13-align16"])
@pytest.mark.parametrize("chunk_rows", [1, 3])
def test_row_chunks_reuse_nothing_stale(preset, chunk_rows):
    """Row chunks of 1 or 3 rows (the last one shorter), a batched A and an infinity in one chunk:
    buffers and B-side work kept across chunks and groups must not leak between them."""
    config = AcceleratorConfig.preset(preset)
    bt, m, k, n = 2, 7, 40, 5
    tier = matmul_tier(config).name
    chunk = chunk_rows * float_tiers.row_bytes(config.float_datapath, tier, bt, n)
    a, b = _operands(bt * m, k, n, seed=11)
    a = a.reshape(bt, m, k)
    a[1, 3, 5] = float("inf")
    assert same_bits(emulated_matmul(a, b, config, chunk_bytes=chunk), golden.matmul(a, b, config))


def test_wide_columns_with_narrow_rows_are_fixed_in_every_row_chunk():
    """bf16 operands: rows of A span nothing, two columns of B span 60 binades. Each crafted
    column sums to a float32 tie broken by a product 2^-30 (float64 drops it). Rows run 3 at a
    time, so every chunk needs the columns' band sums."""
    config = AcceleratorConfig.preset("bf16")
    m, k, n = 7, 3, 64
    chunk = 3 * float_tiers.row_bytes(config.float_datapath, "tiled", 1, n)  # 3 rows a chunk
    g = torch.Generator().manual_seed(5)
    sign = torch.randint(0, 2, (m, 1), generator=g) * 2 - 1
    scale = 2.0 ** torch.randint(-3, 4, (m, 1), generator=g).float() * sign
    a = scale.expand(m, k).contiguous()                                       # each row: one value, span 0
    b = torch.randn(k, n, generator=g).bfloat16().float()
    b[:, 5] = torch.tensor([2.0 ** 30, 2.0 ** 6, 2.0 ** -30])                 # 2^30 + half an ulp + a little
    b[:, 40] = -b[:, 5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the band sums, not the scalar golden fallback
        got = emulated_matmul(a, b, config, chunk_bytes=chunk)
    assert same_bits(got, golden.matmul(a, b, config))
    assert torch.equal(got[:, 5], scale[:, 0] * (2.0 ** 30 + 2.0 ** 7))       # the tie went up: the fix ran


def test_wide_rows_with_narrow_columns_are_fixed_in_their_chunk():
    """The same crafted sums with the roles swapped: two rows of A span 60 binades, B's columns
    span nothing; rows run 3 at a time, so each wide row is fixed inside its own chunk."""
    config = AcceleratorConfig.preset("bf16")
    m, k, n = 64, 3, 7
    chunk = 3 * float_tiers.row_bytes(config.float_datapath, "tiled", 1, n)  # 3 rows a chunk
    g = torch.Generator().manual_seed(6)
    sign = torch.randint(0, 2, (1, n), generator=g) * 2 - 1
    scale = 2.0 ** torch.randint(-3, 4, (1, n), generator=g).float() * sign
    b = scale.expand(k, n).contiguous()
    a = torch.randn(m, k, generator=g).bfloat16().float()
    a[5] = torch.tensor([2.0 ** 30, 2.0 ** 6, 2.0 ** -30])
    a[40] = -a[5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = emulated_matmul(a, b, config, chunk_bytes=chunk)
    assert same_bits(got, golden.matmul(a, b, config))
    assert torch.equal(got[5], scale[0] * (2.0 ** 30 + 2.0 ** 7))


@pytest.mark.parametrize("exact", [True, False])
def test_autocast_does_not_reach_the_emulator(exact):
    """Issue 14 defect 3: under CPU autocast to bfloat16 the float tiers still give float32 results,
    exact ones the golden model's and the fast tier the same as without autocast."""
    a, b = _operands(8, 64, 8, seed=3)
    expected = emulated_matmul(a, b, "fp13", exact=exact)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = emulated_matmul(a, b, "fp13", exact=exact)
    assert got.dtype == torch.float32 and same_bits(got, expected)
    if exact:
        assert same_bits(got, golden.matmul(a, b, "fp13"))

