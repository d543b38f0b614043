"""The MX block-scale path of the float circuits (presets mxfp8, mxfp4: G = mx_block = 32): lanes and
tree on element codes, the two blocks' E8M0 scales as one exponent add per group, bit for bit against
golden (``golden.mx_value`` of the codes, ``golden.dot_values``; ``golden.matmul`` end to end);
refusals; synthesis and the energy path."""

import dataclasses
import math
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import same_bits
from vitaccel import hw
from vitaccel.arith import AcceleratorConfig, emulated_matmul, golden
from vitaccel.arith.mx import E8M0_NAN, MXFormat
from vitaccel.errors import HardwareError
from vitaccel.hw.export import golden_accumulators
from vitaccel.hw.float_tree import formats
from vitaccel.hw.sim import group_stream, run_streams

E2M1, E4M3 = MXFormat.named("mxfp4").element_format, MXFormat.named("mxfp8_e4m3").element_format


def mx_config(preset: str, **changes) -> AcceleratorConfig:
    base = AcceleratorConfig.preset(preset)
    return base.replace(float_datapath=dataclasses.replace(base.float_datapath, **changes))


def dot_ports(config: AcceleratorConfig) -> set[str]:
    """Port names of the config's dot unit (never elaborated)."""
    unit = hw.build(config).dot_unit()
    unit._MustUse__silence = True
    return {p.name for p in hw.sim.ports(unit)}


def mismatches(config: AcceleratorConfig, dots: list[tuple[list[int], list[int], list[int], list[int]]]) -> list:
    """Dot products (a codes, b codes, a block scales, b block scales) through the dot unit, the
    accumulator after every clock against golden's; the failing ones."""
    circuits = hw.build(config)
    fp = circuits.config.float_datapath
    block = fp.mx_block
    streams = [group_stream(a, b, fp.group_size, {"a_scale": (sa, block), "b_scale": (sb, block)})
               for a, b, sa, sb in dots]
    outs = run_streams(circuits.dot, streams)
    bad = []
    for (a, b, sa, sb), out in zip(dots, outs):
        want = golden_accumulators(circuits.config, a, b, sa, sb)
        got = [o["acc"] & 0xFFFFFFFF for o in out]
        if got != want:
            bad.append((a, b, sa, sb, got, want))
    return bad


# (a scale, b scale): 2^0, the extremes 0 and 254 (both ways), 2^-149 (subnormal ties), the
# overflow edge 2^126 / 2^127, deep underflow, NaN on either side or both
SCALE_PAIRS = [(127, 127), (0, 105), (254, 126), (0xFF, 127), (127, 0xFF), (0, 0), (254, 254), (0, 254), (254, 0),
               (1, 100), (253, 127), (0xFF, 0xFF), (90, 140)]
FAST_PAIRS = SCALE_PAIRS[:5]


@pytest.mark.parametrize("pairs", [pytest.param(FAST_PAIRS, id="fast"),
                                   pytest.param(SCALE_PAIRS[5:], id="rest", marks=pytest.mark.slow)])
def test_every_e2m1_pair_at_a_spread_of_scale_pairs(pairs):
    """Every pair of the 16 E2M1 codes as a one-element dot product (one lane, masked rest), each
    scale pair: the product, its scaling and its one rounding to float32 (ties in the subnormals,
    overflow to inf, underflow to signed zero, the NaN scale)."""
    dots = [([x], [y], [sa], [sb]) for sa, sb in pairs for x in range(16) for y in range(16)]
    assert mismatches(AcceleratorConfig.preset("mxfp4"), dots) == []
    want = {(sa, sb): {golden_accumulators(AcceleratorConfig.preset("mxfp4"), [x], [y], [sa], [sb])[0]
                       for x in range(16) for y in range(16)} for sa, sb in pairs}
    if (0, 105) in want:                      # the sweep reaches what it claims: subnormals, inf, NaN
        assert any(0 < v < 0x800000 for v in want[(0, 105)])
    if (254, 126) in want:
        assert 0x7F800000 in want[(254, 126)] and 0xFF800000 in want[(254, 126)]
    if (0xFF, 127) in want:
        assert want[(0xFF, 127)] == {0x7FC00000}


def e4m3_code(rng: random.Random, kind: str) -> int:
    sign = rng.getrandbits(1) << 7
    if kind == "any":
        return rng.randrange(256)                                   # NaN codes (S.1111.111) too
    if kind == "max":
        return sign | E4M3.max_code                                 # 448: a saturated element
    if kind == "zero":
        return sign
    return sign | rng.randrange(E4M3.max_code + 1)


def random_dot(rng: random.Random, k: int, element: str, scales: str) -> tuple[list[int], list[int], list[int],
                                                                               list[int]]:
    blocks = -(-k // 32)

    def scale() -> int:
        if scales == "mid":
            return rng.randint(107, 147)
        if scales == "any":
            return rng.choice((rng.randrange(255), rng.randrange(255), 0, 254, E8M0_NAN))
        return rng.choice((rng.randint(0, 10), rng.randint(244, 254)))  # extremes: overflow, underflow

    def codes() -> list[int]:
        return [e4m3_code(rng, rng.choice(("finite", "finite", "zero", "max")) if element == "mixed" else element)
                for _ in range(k)]
    return codes(), codes(), [scale() for _ in range(blocks)], [scale() for _ in range(blocks)]


def test_e4m3_random_groups_scales_zeros_saturation_overflow_underflow():
    rng = random.Random(8)
    dots = [random_dot(rng, k, element, scales)
            for k, element, scales in [(32, "finite", "mid"), (97, "finite", "mid"), (70, "mixed", "mid"),
                                       (64, "max", "mid"), (45, "zero", "any"), (96, "finite", "any"),
                                       (33, "any", "mid"), (64, "mixed", "extreme"), (96, "max", "extreme"),
                                       (128, "finite", "extreme"), (5, "finite", "any"), (1, "max", "extreme")]
            for _ in range(3)]
    dots.append(([E4M3.max_code] * 64, [E4M3.max_code] * 64, [254, 254], [254, 127]))    # overflow -> +inf
    dots.append(([0x80 | E4M3.max_code] * 32, [E4M3.max_code] * 32, [254], [129]))       # -> -inf
    dots.append(([1] * 32, [0x81] * 32, [0], [0]))            # underflow: the sum -0, the accumulator 0 + -0 = +0
    dots.append(([E4M3.max_code] * 32, [0x80 | E4M3.max_code] * 32, [127], [127]))       # a finite sum of maxima
    assert mismatches(AcceleratorConfig.preset("mxfp8"), dots) == []
    ends = {golden_accumulators(AcceleratorConfig.preset("mxfp8"), *d)[-1] for d in dots}
    assert {0x7F800000, 0xFF800000, 0x7FC00000, 0} <= ends and len(ends) > 20


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(preset=st.sampled_from(["mxfp4", "mxfp8"]), data=st.data())
def test_property_dot_unit_equals_golden(preset, data):
    fa, _ = formats(AcceleratorConfig.preset(preset).float_datapath)
    k = data.draw(st.integers(1, 80), label="K")
    codes = st.lists(st.integers(0, 2 ** fa.bits - 1), min_size=k, max_size=k)
    scales = st.lists(st.one_of(st.integers(0, 255), st.integers(110, 144)), min_size=-(-k // 32),
                      max_size=-(-k // 32))
    dot = (data.draw(codes, label="a"), data.draw(codes, label="b"), data.draw(scales, label="a_scale"),
           data.draw(scales, label="b_scale"))
    assert mismatches(AcceleratorConfig.preset(preset), [dot]) == []


def test_smaller_groups_one_mx_operand_and_other_element_formats():
    """G = 8 in blocks of 32 (four groups share a block's scales), an MX a with a plain b, and the
    E5M2 (ieee specials), E3M2 and E2M3 element formats."""
    rng = random.Random(3)
    dots = [random_dot(rng, k, "mixed", "mid") for k in (32, 70, 9)]
    assert mismatches(mx_config("mxfp8", group_size=8), dots) == []
    config = mx_config("mxfp8", b_format="e4m3")
    assert "a_scale" in dot_ports(config) and "b_scale" not in dot_ports(config)
    a, b = torch.randn(2, 45) * 100, torch.randn(45, 2)
    assert same_bits(hw.simulate(config, a, b), golden.matmul(a, b, config))
    e5m2 = mx_config("mxfp8", a_format="mxfp8_e5m2", b_format="mxfp8_e5m2")   # element inf and NaN codes
    dots = [random_dot(rng, k, "any", scales) for k in (32, 64) for scales in ("mid", "any")]
    dots += [([0x7C] + [1] * 31, [0x3C] * 32, [sa], [127]) for sa in (0, 127, E8M0_NAN)]   # inf * 1 under scales
    assert mismatches(e5m2, dots) == []
    for fa, fb in (("mxfp8_e5m2", "mxfp6_e2m3"), ("mxfp6_e3m2", "e5m7")):   # the other element formats
        config = mx_config("mxfp8", a_format=fa, b_format=fb)
        assert same_bits(hw.simulate(config, a, b), golden.matmul(a, b, config))


@pytest.mark.parametrize("preset", ["mxfp4", "mxfp8"])
def test_simulate_converts_as_golden_extremes_nan_ragged_k(preset):
    """simulate's MX conversion (scales from each block's maximum, the last block partial) against
    golden.matmul and the emulator; float64 operands reach the scale codes 0 and 254."""
    g = torch.Generator().manual_seed(5)
    a = torch.randn(3, 70, generator=g, dtype=torch.float64) * torch.logspace(-4, 4, 70, dtype=torch.float64)
    b = torch.randn(70, 2, generator=g, dtype=torch.float64)
    a[0, :32] = 0.0                                       # a block of zeros: scale code 0
    a[1, 40] = math.nan                                   # a NaN block: the NaN scale
    a[2, :32] *= 2.0 ** 1000                              # scale 254 (float64): the sum overflows to inf
    b[32:64, 1] *= 2.0 ** -1000                           # scale 0: those products underflow
    want = golden.matmul(a, b, preset)
    assert same_bits(hw.simulate(preset, a, b), want)
    assert torch.isinf(want[2]).all() and torch.isnan(want[1]).all()
    a32, b32 = a[:, 32:].float().nan_to_num(0.0), b[32:].float()
    assert same_bits(hw.simulate(preset, a32, b32), emulated_matmul(a32, b32, AcceleratorConfig.preset(preset)))


def test_mx_codes_match_the_torch_encoder():
    from vitaccel.hw.operands import mx_codes
    x = torch.randn(100, dtype=torch.float32) * torch.logspace(-3, 3, 100)
    x[5] = -0.0
    for name in ("mxfp4", "mxfp8_e4m3"):
        fmt = MXFormat.named(name)
        codes, scales = mx_codes(fmt, x.double().tolist())
        enc = fmt.encode(x)
        assert codes == (enc.elements.long() & 0xFF).tolist() and scales == enc.scales.long().tolist()


@pytest.mark.parametrize("config,key", [
    (mx_config("mxfp8", group_size=64), "float_datapath.group_size"),
    (mx_config("mxfp8", group_size=16, mx_block=40), "float_datapath.mx_block"),
    (mx_config("mxfp8", a_format="mxint8"), "float_datapath.a_format"),
    (mx_config("mxfp4", b_format="mxint8"), "float_datapath.b_format"),
])
def test_build_refuses_what_the_scale_path_does_not_build(config, key):
    with pytest.raises(HardwareError, match=rf"{key}: value .* is not allowed for the circuits"):
        hw.build(config)


def test_simulate_accumulators_needs_the_scales_of_mx_sides():
    with pytest.raises(HardwareError, match="row_scales: operand a of 'mxfp4' is an MX format"):
        hw.simulate_accumulators("mxfp4", [[1]], [[1]], col_scales=[[127]])
    with pytest.raises(HardwareError, match="col_scales: operand b"):
        hw.simulate_accumulators("mxfp4", [[1] * 40], [[1] * 40], row_scales=[[127, 127]], col_scales=[[127]])
    with pytest.raises(HardwareError, match="row_scales: not allowed"):
        hw.simulate_accumulators("fp13", [[1]], [[1]], row_scales=[[127]])
    assert hw.simulate_accumulators("mxfp4", [[2]], [[2]], row_scales=[[127]], col_scales=[[128]]) == [[0x40000000]]


@pytest.mark.slow
def test_synthesized_units_and_energies_of_the_mx_presets(tmp_path):
    """Lane, tree, accumulator and dot unit synthesize; the energy path drives the tree's scale
    ports; cost(source="synthesized") takes the figures."""
    from vitaccel.hw.costs import mac_energies
    from vitaccel.hw.energy import calibrate
    from vitaccel.hw.synth import synth_table
    from vitaccel.measure.hardware import MatmulShape, cost

    cal = calibrate(n=4000, cache=tmp_path)
    for preset in ("mxfp4", "mxfp8"):
        rows = {r["element"]: r for r in synth_table(preset, cache=tmp_path)}
        assert {"float_lane", "float_tree", "acc_add", "accumulator_unit", "dot_unit"} <= set(rows)
        assert rows["dot_unit"]["transistors"] > 32 * rows["float_lane"]["transistors"]
        e = mac_energies(preset, n=256, calibration=cal, cache=tmp_path)
        assert e.multiply_pj > 0 and e.tree_pj_per_group > 0 and e.accumulate_pj > 0
        assert "random block scales" in e.operands
        c = cost([MatmulShape(4, 64, 8)], preset, source="synthesized", energies=e)
        assert c.energy_pj["multiply"] == pytest.approx(c.macs * e.multiply_pj)
        assert "synthesized" in c.sources["add"]
