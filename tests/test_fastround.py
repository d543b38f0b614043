"""The fused numba route behind ``FloatFormat.quantize`` for every rounding (``arith/_fastround.py``):
bit for bit the integer encoder's, NaN patterns included, for every format (signed and unsigned,
fnuz, P3109, e8m0, up to 32 bits), over every float32 high half-word at and next to each format's
ties, every float16 pattern, and whole tensors holding subnormals, zeros, overflow, infinities and
NaN; its stochastic draws are ``formats.stochastic_draws``'."""

import numpy as np
import pytest
import torch

from conftest import random_float32
from vitaccel.arith import FP13, FloatFormat, _fastround
from vitaccel.arith.formats import NAMED, ROUNDINGS, stochastic_draws
from vitaccel.errors import UserError

DETERMINISTIC = [r for r in ROUNDINGS if r != "stochastic"]
VARIANTS = [FloatFormat(5, 7, saturate=True), FloatFormat(5, 7, subnormals=False), FloatFormat(5, 7, specials="finite"),
            FloatFormat(3, 2, specials="finite"), FloatFormat(2, 3, specials="finite"),
            FloatFormat(2, 1, specials="finite"), FloatFormat(2, 0, specials="finite"),
            FloatFormat(8, 7, subnormals=False), FloatFormat(6, 9, bias=20),
            FloatFormat(4, 3, specials="fn", saturate=True), FloatFormat(4, 3, bias=8, specials="fnuz", saturate=True),
            FloatFormat(3, 12), FloatFormat(2, 13, subnormals=False),
            FloatFormat(4, 3, specials="finite", subnormals=False), FloatFormat(7, 8, bias=122),
            FloatFormat(5, 2, signed=False), FloatFormat(3, 2, specials="finite", signed=False, nan="zero"),
            FloatFormat(8, 3, subnormals=False), FloatFormat(7, 12, bias=122), FloatFormat(2, 0, specials="finite"),
            FloatFormat(3, 0, specials="finite", bias=2), FloatFormat(8, 23, saturate=True)]
FORMATS = [FloatFormat.named(n) for n in NAMED] + VARIANTS


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The same float32 bit patterns (NaN patterns too)."""
    return a.dtype == b.dtype == torch.float32 and torch.equal(a.view(torch.int32), b.view(torch.int32))


def every_high_half(fmt: FloatFormat) -> torch.Tensor:
    """Every float32 high half-word (all signs, exponents, NaN and inf) with low halves at, next to
    and between fmt's ties when they lie in the low half (man_bits > 7; otherwise the high halves
    hold them), and at the ends (low 0 and 0xFFFF: exact and sticky)."""
    d = 23 - fmt.man_bits
    lows = {0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF}
    if 0 < d <= 16:
        tie, lsb = 1 << (d - 1), (1 << d) % (1 << 16)
        lows |= {(v + k) % (1 << 16) for v in (tie, tie + lsb) for k in (-1, 0, 1)}
    high = torch.arange(2 ** 16, dtype=torch.int64) << 16
    low = torch.tensor(sorted(lows), dtype=torch.int64)
    x = ((high[:, None] | low[None, :]).flatten().to(torch.int32)).view(torch.float32)
    return _allowed(fmt, x)


def _allowed(fmt: FloatFormat, x: torch.Tensor) -> torch.Tensor:
    """x without the values the encoder refuses for fmt (NaN into 'finite' with nan='raise',
    negatives into an unsigned format without NaN): those raise, tested below."""
    if fmt.nan_code is None and fmt.nan == "raise":
        x = x[~x.isnan()]
    if fmt.nan_code is None and not fmt.signed:
        x = x[~(x < 0) & ~x.isnan()]
    return x


def every_half(fmt: FloatFormat) -> torch.Tensor:
    """All 2^16 float16 bit patterns as float32 (every binade of half, its subnormals, NaN, inf)."""
    return _allowed(fmt, torch.arange(-2 ** 15, 2 ** 15, dtype=torch.int32).to(torch.int16).view(torch.float16).float())


def check(fmt: FloatFormat, x: torch.Tensor, rounding: str) -> None:
    got = _fastround.quantize(fmt, x, rounding)
    assert got is not None, (fmt, rounding)  # the route ran
    assert bits_equal(got, fmt.decode(fmt.encode(x, rounding))), (fmt, rounding)


@pytest.mark.parametrize("fmt", [FP13, FloatFormat.named("e4m3"), FloatFormat.named("binary8p3"),
                                 FloatFormat(2, 1, specials="finite"), FloatFormat(5, 7, subnormals=False),
                                 FloatFormat(6, 9, bias=20), FloatFormat.named("e8m7"), FloatFormat.named("e8m0"),
                                 FloatFormat.named("ue4m3"), FloatFormat.named("binary8p1"),
                                 FloatFormat.named("tf32"), FloatFormat(7, 8, bias=122)], ids=repr)
def test_every_high_half_equals_the_encoder(fmt):
    x = every_high_half(fmt)
    for rounding in DETERMINISTIC:
        check(fmt, x, rounding)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS, ids=repr)
def test_every_high_half_equals_the_encoder_for_every_format(fmt):
    x = every_high_half(fmt)
    for rounding in DETERMINISTIC:
        check(fmt, x, rounding)


QUICK = [FloatFormat.named(n) for n in ("e5m7", "e4m3", "e5m2fnuz", "binary8p1", "e8m0", "ue4m3", "tf32", "fp32")] + [
    FloatFormat(7, 12, bias=122), FloatFormat(3, 2, specials="finite", signed=False, nan="zero"),
    FloatFormat(2, 0, specials="finite"), FloatFormat(5, 7, subnormals=False)]


@pytest.mark.parametrize("fmt", [*QUICK, *[pytest.param(f, marks=pytest.mark.slow) for f in FORMATS if f not in QUICK]],
                         ids=repr)
def test_every_half_pattern_equals_the_encoder_for_every_format_and_rounding(fmt):
    """Every float16 pattern (the ties of every format of at most 10 mantissa bits among them),
    every rounding: stochastic with 62-bit and 3-bit draws from the same seed on both sides."""
    x = every_half(fmt)
    for rounding in DETERMINISTIC:
        check(fmt, x, rounding)
    for n in (None, 3):
        got = _fastround.quantize(fmt, x, "stochastic", 12345, n)
        codes = fmt._encode_all(x, "stochastic", 12345, n)
        assert got is not None and bits_equal(got, fmt.decode(codes)), (fmt, n)


def test_quantize_never_runs_the_encoder_on_float32_cpu_input(monkeypatch):
    """Every format and rounding, float32 CPU in: the fused route decides every value (the
    encoder is not called); float64 or strided input is not the route's."""
    from vitaccel.arith import formats
    monkeypatch.setattr(formats.FloatFormat, "_encode_all", lambda *a: pytest.fail("the encoder ran"))
    x = torch.cat([random_float32(5000, seed=1), torch.tensor([float("inf"), -float("inf"), float("nan"), -0.0])])
    for fmt in FORMATS:
        xs = _allowed(fmt, x)
        for rounding in ROUNDINGS:
            fmt.quantize(xs, rounding, torch.Generator().manual_seed(0) if rounding == "stochastic" else None)
    assert not _fastround.applies(torch.ones(3, dtype=torch.float64))
    assert not _fastround.applies(torch.ones(4)[::2])


@pytest.mark.parametrize("rounding", DETERMINISTIC)
@pytest.mark.parametrize("fmt", [FP13, FloatFormat.named("e5m10"), FloatFormat.named("e4m3"),
                                 FloatFormat.named("e5m2fnuz"), FloatFormat(3, 2, specials="finite"),
                                 FloatFormat(5, 7, subnormals=False), FloatFormat.named("e8m0"),
                                 FloatFormat.named("binary8p3"), FloatFormat.named("fp24"),
                                 FloatFormat(5, 2, signed=False)], ids=repr)
def test_whole_tensors_with_zeros_subnormals_and_specials(fmt, rounding):
    """Activations, weights and ReLU outputs with overflow, infinities, NaN (payloads too) and -0
    spread over the tensor (the rare values the generic path decides among the common ones)."""
    g = torch.Generator().manual_seed(3)
    act = torch.randn(40, 384, generator=g)
    weights = torch.randn(40, 384, generator=g) * 0.02
    relu = act.clamp(min=0)
    tiny = (torch.rand(4000, generator=g) * 2 - 1) * fmt.min_normal * 1.5  # fmt's subnormal range
    ties = ((torch.arange(-200, 200) + 0.5) * fmt.min_subnormal).float()  # ties on the subnormal grid
    x = torch.cat([act.flatten(), weights.flatten(), relu.flatten(), tiny, ties, -ties, random_float32(3000, seed=4)])
    special = torch.tensor([fmt.max, -fmt.max, fmt.max * 1.01, -fmt.max * 1.5, float("inf"), -float("inf"),
                            float("nan"), -0.0, 0.0])
    payload = torch.tensor([0x7FC01234, 0x7F800001, -0x00001234, -0x00400000], dtype=torch.int32).view(torch.float32)
    x[torch.randperm(len(x), generator=g)[:400]] = torch.cat([special, payload]).repeat(31)[:400]
    x = _allowed(fmt, x)
    check(fmt, x, rounding)
    check(fmt, x[:len(x) // 7 * 7].reshape(-1, 7)[:, :5].contiguous(), rounding)  # another shape, pieces elsewhere


@pytest.mark.parametrize("rounding", DETERMINISTIC)
def test_quantize_runs_the_route_and_half_and_bfloat16_input_too(rounding, monkeypatch):
    """``FloatFormat.quantize`` takes this route for float32 (and, converted exactly, half and
    bfloat16) input, and its results are the encoder's."""
    calls = []
    real = _fastround.quantize
    monkeypatch.setattr(_fastround, "quantize", lambda *a: calls.append(a[2]) or real(*a))
    fmt = FloatFormat(3, 4, specials="finite", subnormals=False)  # no cast route for nearest_even either
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        x = (torch.randn(3000, generator=torch.Generator().manual_seed(5)) * 4).to(dtype)
        assert bits_equal(fmt.quantize(x, rounding), fmt.decode(fmt.encode(x, rounding)))
    assert calls == [rounding] * 3


def test_numpy_in_and_out():
    """A NumPy array in gives a float32 NumPy array out, the tensor route's bits."""
    x = torch.randn(3000, generator=torch.Generator().manual_seed(2)) * 300
    for name in ("e4m3", "e5m7", "ue4m3", "e8m0"):
        fmt = FloatFormat.named(name)
        xs = x.abs() if not fmt.signed else x
        got = fmt.quantize(xs.numpy(), "ties_away")
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        assert bits_equal(torch.from_numpy(got), fmt.quantize(xs, "ties_away"))
        assert bits_equal(torch.from_numpy(fmt.quantize(xs.double().numpy(), "up")), fmt.quantize(xs, "up"))


def test_nan_in_a_format_without_nan_raises_as_the_encoder_does():
    fmt = FloatFormat(3, 2, specials="finite")
    x = torch.ones(70_000)
    x[50_000] = float("nan")
    with pytest.raises(UserError, match="specials='finite' cannot store"):
        fmt.quantize(x, "up")
    with pytest.raises(UserError, match="specials='finite' cannot store"):
        fmt.quantize(x, "stochastic", torch.Generator().manual_seed(0))
    zero = FloatFormat(3, 2, specials="finite", nan="zero")
    assert zero.quantize(x, "up")[50_000].item() == 0.0
    x[50_000] = -2.0
    with pytest.raises(UserError, match="unsigned format .* cannot store"):
        FloatFormat(3, 2, specials="finite", signed=False).quantize(x, "down")
    assert FloatFormat.named("ue4m3").quantize(x, "down")[50_000].isnan()


def test_threads_quantizing_at_once_give_the_same_bits():
    """The kernels release the GIL and keep no state: two threads at once, each its own result."""
    import threading
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(8))
    want = {r: FP13.quantize(x, r) for r in DETERMINISTIC}
    got = {}
    workers = [threading.Thread(target=lambda r=r: got.__setitem__(r, FP13.quantize(x, r))) for r in DETERMINISTIC]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert all(bits_equal(got[r], want[r]) for r in DETERMINISTIC)


# -- stochastic rounding: the encoder's draws, in the kernel ---------------------------------------
@pytest.mark.parametrize("fmt", [FP13, FloatFormat.named("e8m7"), FloatFormat.named("e4m3"),
                                 FloatFormat.named("e5m2fnuz"), FloatFormat.named("binary8p1"),
                                 FloatFormat(5, 7, subnormals=False), FloatFormat(2, 1, specials="finite"),
                                 FloatFormat(3, 12), FloatFormat.named("e8m0"), FloatFormat.named("ue4m3"),
                                 FloatFormat.named("fp32"), FloatFormat(7, 8, bias=122)], ids=repr)
def test_stochastic_equals_the_encoder_with_the_same_generator(fmt, monkeypatch):
    """Every high half-word (ties and sticky lows) plus random values, with 62-bit draws and with
    n bits on both sides of the dropped width 23 - m: the encoder's bits, and the generator left
    where the encoder leaves it (the same seed, drawn once)."""
    calls = []
    real = _fastround.quantize
    monkeypatch.setattr(_fastround, "quantize", lambda *a: calls.append(1) or real(*a))
    x = _allowed(fmt, torch.cat([every_high_half(fmt)[::7], random_float32(20000, seed=6), torch.randn(20000)]))
    for n in (None, 1, 5, 16, 23, 40):
        ours, theirs = torch.Generator().manual_seed(n or 0), torch.Generator().manual_seed(n or 0)
        got = fmt.quantize(x, "stochastic", ours, stochastic_bits=n)
        assert bits_equal(got, fmt.decode(fmt.encode(x, "stochastic", theirs, stochastic_bits=n))), n
        assert torch.equal(torch.randint(0, 99, (4,), generator=ours), torch.randint(0, 99, (4,), generator=theirs))
    assert len(calls) == 6


def _kernel_draw(seed: int, i: int, n: int) -> int:
    """Draw i of the stream of ``seed`` as the kernel makes it (numba: keys, the two 32-bit words)."""
    k1, k2, k3, k4 = _fastround._keys(np.uint64(seed), i >> 32)
    c = np.uint32(i & 0xFFFFFFFF)
    return int(_fastround._draw(_fastround._hash32(c, k1, k2), _fastround._hash32(c, k3, k4), n))


def _reference_draw(seed: int, i: int, n: int) -> int:
    """Draw i of ``seed``'s stream from the definition in ``stochastic_draws``, in Python integers."""
    def mix64(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2 ** 64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2 ** 64
        return z ^ (z >> 31)

    def lowbias(c: int, k1: int, k2: int) -> int:
        x = c ^ k1
        x = ((x ^ (x >> 16)) * 0x21F0AAAD) % 2 ** 32
        x = (((x ^ (x >> 15)) ^ k2) * 0x735A2D97) % 2 ** 32
        return x ^ (x >> 15)

    h, c = divmod(i, 2 ** 32)
    z0, z1 = (mix64((seed + (2 * h + j) * 0x9E3779B97F4A7C15) % 2 ** 64) for j in (1, 2))
    word = lowbias(c, z0 % 2 ** 32, z0 >> 32) << 32 | lowbias(c, z1 % 2 ** 32, z1 >> 32)
    return word >> (64 - n)


def test_the_kernel_draws_the_stream_of_stochastic_draws():
    """Draw i of the kernel (numba, 32-bit words) and element i of ``formats.stochastic_draws``
    (torch, int64) are the definition's (Python integers) for the seed drawn from the same
    generator, at every bit width, and past 2^32 draws (new keys) in the kernel."""
    from vitaccel.arith import formats
    for n in (1, 7, 23, 32, 33, 40, 62):
        want = stochastic_draws(1000, torch.Generator().manual_seed(n), n)
        seed = formats._seed(torch.Generator().manual_seed(n))
        at = (0, 1, 2, 500, 999)
        assert [_kernel_draw(seed, i, n) for i in at] == want[list(at)].tolist() == \
            [_reference_draw(seed, i, n) for i in at]
        assert int(want.min()) >= 0 and int(want.max()) < 2 ** n
    for i in (2 ** 32 - 1, 2 ** 32, 2 ** 33 + 5):
        assert _kernel_draw(0x0123456789ABCDEF, i, 62) == _reference_draw(0x0123456789ABCDEF, i, 62)
    draws = stochastic_draws((400, 250), torch.Generator().manual_seed(3))
    assert draws.shape == (400, 250) and draws.dtype == torch.int64
    bits = torch.stack([(draws >> k) & 1 for k in (0, 30, 61)]).double().mean(dim=(1, 2))
    assert bool(((bits - 0.5).abs() < 0.01).all())  # 10^5 fair bits each: 0.5 +- 0.0016 per sigma


def test_stochastic_carry_the_top_32_bits_leave_undecided_is_the_encoders():
    """On the subnormal grid with n > 32 the loop decides a carry from the fraction's and the draw's
    top 32 bits; where they sum to all ones the low word decides (the generic path): values built
    to land there give the encoder's bits, rounding both ways."""
    from vitaccel.arith import formats
    fmt = FloatFormat.named("e4m3")  # subnormal quantum 2^-9
    seed = formats._seed(torch.Generator().manual_seed(11))
    n = 4096
    top = (torch.tensor([_kernel_draw(seed, i, 32) for i in range(n)]))
    at = torch.nonzero(top >= 0xFF800001).flatten()  # fraction bits K = 2^32 - 1 - T fit below 2^-9
    x = torch.zeros(n)
    x[at] = ((0xFFFFFFFF - top[at]).double() + 0.5).mul(2.0 ** -41).float()  # (K + 1/2) 2^-32 quanta
    assert len(at) >= 4 and torch.equal(x[at].double(), ((0xFFFFFFFF - top[at]).double() + 0.5) * 2.0 ** -41)
    got = fmt.quantize(x, "stochastic", torch.Generator().manual_seed(11))
    assert bits_equal(got, fmt.decode(fmt.encode(x, "stochastic", torch.Generator().manual_seed(11))))
    assert len(set(got[at].tolist())) == 2  # the low words carried some and not others
