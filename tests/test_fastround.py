"""The bit-rounding route behind ``FloatFormat.quantize`` for every deterministic rounding
(``arith/_fastround.py``): bit for bit the integer encoder's, NaN patterns included, over every
float32 high half-word at and next to each format's ties, and on whole tensors whose pieces hold
subnormals, zeros, overflow, infinities and NaN."""

import numpy as np
import pytest
import torch

from conftest import random_float32
from vitaccel.arith import FP13, FloatFormat, _fastround
from vitaccel.arith.formats import NAMED, ROUNDINGS
from vitaccel.errors import UserError

DETERMINISTIC = [r for r in ROUNDINGS if r != "stochastic"]
VARIANTS = [FloatFormat(5, 7, saturate=True), FloatFormat(5, 7, subnormals=False), FloatFormat(5, 7, specials="finite"),
            FloatFormat(3, 2, specials="finite"), FloatFormat(2, 3, specials="finite"),
            FloatFormat(2, 1, specials="finite"), FloatFormat(2, 0, specials="finite"),
            FloatFormat(8, 7, subnormals=False), FloatFormat(6, 9, bias=20),
            FloatFormat(4, 3, specials="fn", saturate=True), FloatFormat(4, 3, bias=8, specials="fnuz", saturate=True),
            FloatFormat(3, 12), FloatFormat(2, 13, subnormals=False),
            FloatFormat(4, 3, specials="finite", subnormals=False)]
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
    if d <= 16:
        tie, lsb = 1 << (d - 1), (1 << d) % (1 << 16)
        lows |= {(v + k) % (1 << 16) for v in (tie, tie + lsb) for k in (-1, 0, 1)}
    high = torch.arange(2 ** 16, dtype=torch.int64) << 16
    low = torch.tensor(sorted(lows), dtype=torch.int64)
    x = ((high[:, None] | low[None, :]).flatten().to(torch.int32)).view(torch.float32)
    return x[~x.isnan()] if fmt.specials == "finite" else x


def check(fmt: FloatFormat, x: torch.Tensor, rounding: str) -> None:
    got = _fastround.quantize(fmt, x, rounding)
    assert got is not None, (fmt, rounding)  # the route ran
    assert bits_equal(got, fmt.decode(fmt.encode(x, rounding))), (fmt, rounding)


@pytest.mark.parametrize("fmt", [FP13, FloatFormat.named("e4m3"), FloatFormat.named("binary8p3"),
                                 FloatFormat(2, 1, specials="finite"), FloatFormat(5, 7, subnormals=False),
                                 FloatFormat(6, 9, bias=20), FloatFormat.named("e8m7")], ids=repr)
def test_every_high_half_equals_the_encoder(fmt):
    x = every_high_half(fmt)
    for rounding in DETERMINISTIC:
        if _fastround._plan(fmt, rounding) is not None:
            check(fmt, x, rounding)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS, ids=repr)
def test_every_high_half_equals_the_encoder_for_every_format(fmt):
    x = every_high_half(fmt)
    for rounding in DETERMINISTIC:
        if _fastround._plan(fmt, rounding) is not None:
            check(fmt, x, rounding)


def test_the_route_covers_every_format_and_rounding_but_even_ties_of_man_bits_0():
    """nearest_even with man_bits=0 breaks a tie by the even exponent field, not by the even bit
    pattern; those formats (and none else here) go to the encoder."""
    skipped = {(fmt, r) for fmt in FORMATS for r in DETERMINISTIC if _fastround._plan(fmt, r) is None}
    assert skipped == {(fmt, "nearest_even") for fmt in FORMATS if fmt.man_bits == 0}
    assert _fastround._plan(FloatFormat(7, 8, bias=122), "up") is None  # 1 / 2^(emin - m) is no float32
    assert _fastround.quantize(FP13, torch.ones(3, dtype=torch.float64), "up") is None
    assert _fastround.quantize(FP13, torch.ones(4)[::2], "up") is None


@pytest.mark.parametrize("rounding", DETERMINISTIC)
@pytest.mark.parametrize("fmt", [FP13, FloatFormat.named("e5m10"), FloatFormat.named("e4m3"),
                                 FloatFormat.named("e5m2fnuz"), FloatFormat(3, 2, specials="finite"),
                                 FloatFormat(5, 7, subnormals=False)], ids=repr)
def test_whole_tensors_with_zeros_subnormals_and_specials_across_pieces(fmt, rounding, monkeypatch):
    """Activations, weights and ReLU outputs with overflow, infinities, NaN (payloads too) and -0
    spread over pieces of an odd size (so over piece ends), against the encoder."""
    monkeypatch.setattr(_fastround, "_CHUNK", 997)
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
    if fmt.specials == "finite":
        x = x[~x.isnan()]
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


def test_nan_in_a_format_without_nan_raises_as_the_encoder_does():
    fmt = FloatFormat(3, 2, specials="finite")
    x = torch.ones(70_000)
    x[50_000] = float("nan")
    with pytest.raises(UserError, match="specials='finite' cannot store"):
        fmt.quantize(x, "up")
    zero = FloatFormat(3, 2, specials="finite", nan="zero")
    assert zero.quantize(x, "up")[50_000].item() == 0.0


def test_scratch_is_per_thread():
    """The two scratch arrays are kept per thread, so threads quantizing at once do not share them."""
    import threading
    seen = []
    worker = threading.Thread(target=lambda: seen.append(_fastround._scratch()[0]))
    worker.start()
    worker.join()
    assert seen[0] is not _fastround._scratch()[0] and isinstance(seen[0], np.ndarray)


# -- stochastic rounding: the encoder's draws, an integer addition before the mask ------------------
@pytest.mark.parametrize("fmt", [FP13, FloatFormat.named("e8m7"), FloatFormat.named("e4m3"),
                                 FloatFormat.named("e5m2fnuz"), FloatFormat.named("binary8p1"),
                                 FloatFormat(5, 7, subnormals=False), FloatFormat(2, 1, specials="finite"),
                                 FloatFormat(3, 12)], ids=repr)
def test_stochastic_equals_the_encoder_with_the_same_generator(fmt, monkeypatch):
    """Every high half-word (ties and sticky lows) plus random values, with 62-bit draws and with
    n bits on both sides of the dropped width 23 - m: the encoder's bits, and the generator left
    where the encoder leaves it (the same draws, made once)."""
    calls = []
    real = _fastround.stochastic
    monkeypatch.setattr(_fastround, "stochastic", lambda *a: calls.append(1) or real(*a))
    x = torch.cat([every_high_half(fmt)[::7], random_float32(20000, seed=6), torch.randn(20000)])
    if fmt.specials == "finite":
        x = x[~x.isnan()]
    for n in (None, 1, 5, 16, 23, 40):
        ours, theirs = torch.Generator().manual_seed(n or 0), torch.Generator().manual_seed(n or 0)
        got = fmt.quantize(x, "stochastic", ours, stochastic_bits=n)
        assert bits_equal(got, fmt.decode(fmt.encode(x, "stochastic", theirs, stochastic_bits=n))), n
        assert torch.equal(torch.randint(0, 99, (4,), generator=ours), torch.randint(0, 99, (4,), generator=theirs))
    assert len(calls) == 6
