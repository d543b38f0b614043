"""Property-based differential tests (issue 14): random formats, configs and inputs against golden.

Every example is checked bit for bit (``same_bits``) against ``arith/golden.py``: random
``FloatFormat``s with random inputs (float32 and float64, ties, subnormals, extremes, inf/NaN),
and random valid accelerator configs built as dicts and read back through YAML, with small random
matrices (K not a multiple of G, zeros, subnormals, extremes; inf/NaN for float configs), in every
tier the config allows. The default run draws a bounded number of examples (derandomised, so the
run is reproducible); the ``slow`` variants draw many more. Shrunk counterexamples found while
writing these became the plain regression tests in test_formats/test_floatpath/test_int_matmul.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import same_bits
from vitaccel.arith import AcceleratorConfig, FloatFormat, emulated_matmul, fast_error_bound, golden
from vitaccel.arith.config import ACCUMULATORS, OPERAND_FORMATS, OPERAND_ROUNDINGS
from vitaccel.arith.formats import NAMED, stochastic_draws
from vitaccel.arith.mx import MX_NAMES
from vitaccel.configtools import ConfigError

DEFAULT = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


# -- strategies ---------------------------------------------------------------------------------
@st.composite
def float_formats(draw: st.DrawFn) -> FloatFormat:
    """Any valid FloatFormat of at most 32 bits (bias within float32's exponent range), signed or
    (ieee, fn) unsigned, or the e8m0 scale format."""
    if draw(st.integers(0, 15)) == 0:
        return NAMED["e8m0"]
    exp_bits = draw(st.integers(2, 8))
    specials = draw(st.sampled_from(["ieee", "fn", "finite"] if exp_bits < 8 else ["ieee"]))  # else emax > 127
    wide = draw(st.booleans())
    man_bits = draw(st.integers(0 if specials == "finite" else 1, min(23, 31 - exp_bits) if wide else 15 - exp_bits))
    default = 2 ** (exp_bits - 1) - 1
    top = 2 ** exp_bits - (2 if specials == "ieee" else 1)
    bias = draw(st.integers(max(default - 8, top - 127), min(default + 8, 127)))
    signed = specials == "finite" or draw(st.booleans())
    return FloatFormat(exp_bits, man_bits, bias, specials, draw(st.booleans()), draw(st.booleans()), nan="zero",
                       signed=signed)


def _near_values(fmt: FloatFormat, draw: st.DrawFn) -> list[float]:
    """Values of fmt, the midpoints between neighbours (ties) and points just off them."""
    codes = draw(st.lists(st.integers(0, fmt.max_code - 1), min_size=1, max_size=8))
    lo = fmt.decode(torch.tensor(codes)).double()
    hi = fmt.decode(torch.tensor(codes) + 1).double()
    mid = (lo + hi) / 2
    eps = draw(st.sampled_from([0.0, 2.0 ** -30, -(2.0 ** -30)]))
    out = torch.cat([lo, mid, mid * (1 + eps)])
    return [v for v in out.tolist() if math.isfinite(v)]


FLOAT32S = st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)


@st.composite
def format_inputs(draw: st.DrawFn) -> tuple[FloatFormat, list[float]]:
    fmt = draw(float_formats())
    values = draw(st.lists(FLOAT32S, max_size=12)) + _near_values(fmt, draw)
    values += [fmt.max * 2, -fmt.max * 1.01, fmt.min_normal / 2, -fmt.min_subnormal / 2, 0.0, -0.0]
    return fmt, values


@st.composite
def int_configs(draw: st.DrawFn) -> dict:
    """A valid int_datapath section, up to the schema's limits."""
    a_bits, b_bits = draw(st.integers(2, 16)), draw(st.integers(2, 16))
    group = 2 ** draw(st.integers(0, 5))
    acc_bits = draw(st.integers(2, 48))
    dp: dict = {"a_bits": a_bits, "b_bits": b_bits, "group_size": group, "acc_bits": acc_bits,
                "overflow": draw(st.sampled_from(["saturate", "wrap"])),
                "activation_scale": draw(st.sampled_from(["per_tensor", "per_token"]))}
    if draw(st.booleans()):
        dp["keep_bits"] = draw(st.integers(1, a_bits))
        dp["keep_rounding"] = draw(st.sampled_from(["truncate", "nearest", "unbiased"]))
    if draw(st.booleans()):
        dp["psum_bits"] = draw(st.integers(2, 48))
        dp["psum_drop_lsbs"] = draw(st.integers(0, min(32, 48 - dp["psum_bits"])))
        dp["psum_rounding"] = draw(st.sampled_from(["truncate", "nearest", "unbiased"]))
    elif draw(st.booleans()):
        dp["psum_drop_lsbs"] = draw(st.integers(0, 32))
    if draw(st.booleans()):
        storage: dict = {"tile_k": group * draw(st.integers(1, 4))}
        kind = draw(st.sampled_from(["trunc", "float", None]))
        if kind == "trunc" and acc_bits > 2:
            storage["codec"] = {"kind": "trunc", "drop_bits": draw(st.integers(1, acc_bits - 1)),
                                "rounding": draw(st.sampled_from(["nearest", "truncate"]))}
        elif kind == "float" and acc_bits >= 6:
            man = draw(st.integers(1, acc_bits - 4))
            exps = [e for e in range(1, 9) if 1 + e + man < acc_bits and 2 ** e - 1 + man >= acc_bits - 1]
            if exps:
                storage["codec"] = {"kind": "float", "exp_bits": draw(st.sampled_from(exps)), "man_bits": man,
                                    "rounding": draw(st.sampled_from(["nearest_even", "toward_zero"]))}
        dp["psum_storage"] = storage
    if draw(st.booleans()):
        e, m = draw(st.integers(4, 8)), draw(st.integers(3, 12))
        lo = max(m + 24, 2 ** e + m - 129)
        if lo <= 149:
            dp["scale_codec"] = {"kind": "float", "exp_bits": e, "man_bits": m, "bias": draw(st.integers(lo, 149)),
                                 "rounding": draw(st.sampled_from(["nearest_even", "toward_zero"]))}
    return {"name": "fuzz", "datapath": "int", "int_datapath": dp}


@st.composite
def float_configs(draw: st.DrawFn) -> dict:
    group = 2 ** draw(st.integers(0, 5))
    formats = [f for f in OPERAND_FORMATS if f not in MX_NAMES]  # MX operands: tests/test_mx_datapath.py
    fp: dict = {"a_format": draw(st.sampled_from(formats)), "b_format": draw(st.sampled_from(formats)),
                "operand_rounding": draw(st.sampled_from(OPERAND_ROUNDINGS)), "group_size": group,
                "accumulator": draw(st.sampled_from(ACCUMULATORS)),
                "multiplier": draw(st.sampled_from(["direct", "nibble"]))}
    if draw(st.booleans()):
        fp["align_bits"] = draw(st.integers(0, min(48, 62 - (group.bit_length() - 1))))
        fp["align_rounding"] = draw(st.sampled_from(["toward_zero", "nearest_even"]))
    return {"name": "fuzz", "datapath": "float", "float_datapath": fp}


def _through_yaml(data: dict) -> AcceleratorConfig:
    """The config as a user writes it: a dict dumped to YAML, read back and validated."""
    try:
        return AcceleratorConfig.from_dict(yaml.safe_load(yaml.safe_dump(data)))
    except ConfigError:
        assume(False)  # a combination the schema refuses (e.g. a codec below the accumulator's range)
        raise


@st.composite
def matrices(draw: st.DrawFn, finite: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, K) @ (K, N) float32 operands: normal, subnormal, zero and extreme magnitudes."""
    m, k, n = draw(st.integers(1, 3)), draw(st.integers(1, 40)), draw(st.integers(1, 3))
    scale = draw(st.sampled_from([1.0, 2.0 ** -20, 2.0 ** 20, 2.0 ** -130, 1e30]))
    values = st.floats(width=32, allow_nan=not finite, allow_infinity=not finite, allow_subnormal=True,
                       min_value=None if not finite else -(2.0 ** 126), max_value=None if not finite else 2.0 ** 126)
    special = st.one_of(values, st.sampled_from([0.0, -0.0, 1.0, -1.0]),
                        st.floats(-4, 4, width=32).map(lambda v: float(torch.tensor(v * scale).float())))
    a = torch.tensor(draw(st.lists(special, min_size=m * k, max_size=m * k)), dtype=torch.float32).reshape(m, k)
    b = torch.tensor(draw(st.lists(special, min_size=k * n, max_size=k * n)), dtype=torch.float32).reshape(k, n)
    return a, b


# -- properties ---------------------------------------------------------------------------------
def _check_format(fmt: FloatFormat, values: list[float]) -> None:
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor(values, dtype=torch.float64).to(dtype)
        for rounding in OPERAND_ROUNDINGS:
            expected = [golden.to_float(golden.quantize(fmt, v, rounding)) for v in x.double().tolist()]
            assert same_bits(fmt.quantize(x, rounding), torch.tensor(expected, dtype=torch.float64).float()), \
                (fmt, rounding, dtype)
            assert same_bits(fmt.decode(fmt.encode(x, rounding)), fmt.quantize(x, rounding))


def _check_stochastic(fmt: FloatFormat, values: list[float], seed: int) -> None:
    """Stochastic rounding replayed with the same 62-bit draws (u = d / 2^62)."""
    x = torch.tensor([v for v in values if math.isfinite(v) and (fmt.signed or v >= 0)], dtype=torch.float32)
    got = fmt.quantize(x, "stochastic", torch.Generator().manual_seed(seed))
    draws = stochastic_draws(x.shape, torch.Generator().manual_seed(seed))
    for xi, d, gi in zip(x.tolist(), draws.tolist(), got.tolist()):
        u = Fraction(d, 2 ** 62)
        assert golden.to_float(golden.quantize(fmt, xi, "stochastic", u)) == gi, (fmt, xi)


def _check_int_config(data: dict, a: torch.Tensor, b: torch.Tensor, given_scale: bool) -> None:
    config = _through_yaml(data)
    per_tensor = config.int_datapath.activation_scale == "per_tensor"   # per_token scales every row itself
    scales = {"a_scale": a.abs().max().clamp(min=1e-30) / 3} if given_scale and per_tensor else {}
    try:
        expected = golden.matmul(a, b, config, **scales)
    except ValueError:
        assume(False)  # e.g. a scale codec that rounds a scale to 0: emulated_matmul refuses it too
    from vitaccel.arith import matmul_tier
    tiers = ["tiled", "faithful"] + (["fast"] if matmul_tier(config, k=a.shape[-1]).name == "fast" else [])
    for tier in tiers:
        got = emulated_matmul(a, b, config, tier=tier, **scales)
        assert same_bits(got, expected), (data, tier)


def _check_float_config(data: dict, a: torch.Tensor, b: torch.Tensor) -> None:
    config = _through_yaml(data)
    expected = golden.matmul(a, b, config)
    tiers = ["faithful"] if config.float_datapath.align_bits is not None else ["tiled"]
    for tier in tiers:
        assert same_bits(emulated_matmul(a, b, config, tier=tier), expected), (data, tier)
    if config.float_datapath.align_bits is None and bool(torch.isfinite(expected).all()):
        fp = config.float_datapath
        qa = FloatFormat.named(fp.a_format).quantize(a, fp.operand_rounding)
        qb = FloatFormat.named(fp.b_format).quantize(b, fp.operand_rounding)
        fast = emulated_matmul(a, b, config, exact=False)
        if bool(torch.isfinite(qa).all() and torch.isfinite(qb).all() and torch.isfinite(fast).all()):
            err = (fast.double() - expected.double()).abs()
            assert bool((err <= fast_error_bound(qa, qb, fp.group_size)).all()), data


def _run(check_settings: settings, strategy: st.SearchStrategy, check) -> None:
    @check_settings
    @given(strategy)
    def run(example):
        check(*example)
    run()


FORMAT_CASES = format_inputs()
STOCHASTIC_CASES = st.tuples(float_formats().filter(lambda f: f.specials != "e8m0"),  # e8m0: test_format_wide
                             st.lists(FLOAT32S, min_size=1, max_size=16), st.integers(0, 2 ** 16))
INT_CASES = st.tuples(int_configs(), matrices(finite=True)).flatmap(
    lambda t: st.tuples(st.just(t[0]), st.just(t[1][0]), st.just(t[1][1]), st.booleans()))
FLOAT_CASES = st.tuples(float_configs(), matrices(finite=False)).map(lambda t: (t[0], *t[1]))


def test_random_formats_equal_golden():
    _run(DEFAULT, FORMAT_CASES, _check_format)


def test_random_formats_stochastic_rounding_equals_golden():
    _run(settings(DEFAULT, max_examples=12), STOCHASTIC_CASES, _check_stochastic)  # golden scans each new format


def test_random_int_configs_equal_golden_in_every_tier():
    _run(DEFAULT, INT_CASES, _check_int_config)


def test_random_float_configs_equal_golden_in_every_tier():
    _run(DEFAULT, FLOAT_CASES, _check_float_config)


@pytest.mark.slow
@pytest.mark.parametrize("cases,check", [(FORMAT_CASES, _check_format), (STOCHASTIC_CASES, _check_stochastic),
                                         (INT_CASES, _check_int_config), (FLOAT_CASES, _check_float_config)],
                         ids=["formats", "stochastic", "int-configs", "float-configs"])
def test_many_random_examples_equal_golden(cases, check):
    _run(SLOW, cases, check)


def test_a_scale_codec_that_rounds_a_weight_scale_to_0_is_refused_by_golden_and_the_emulator_alike():
    """The fuzzer's find (2 bits, a float scale codec whose smallest step is 2^-29, a weight of
    2.4e-16): golden raised ZeroDivisionError where emulated_matmul names the key."""
    config = {"name": "fuzz", "datapath": "int",
              "int_datapath": {"a_bits": 2, "b_bits": 2, "group_size": 1, "acc_bits": 2,
                               "scale_codec": {"kind": "float", "exp_bits": 4, "man_bits": 3, "bias": 27}}}
    a, b = torch.zeros(1, 1), torch.tensor([[2.3637e-16]])
    for run in (lambda: golden.matmul(a, b, config), lambda: emulated_matmul(a, b, config)):
        with pytest.raises(ValueError, match="int_datapath.scale_codec rounds a weight scale to 0"):
            run()
