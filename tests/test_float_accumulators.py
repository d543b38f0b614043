"""The float datapath's configurable accumulator (fp32, fp16, bf16, tf32, fp24) and operand roundings
(nearest_even, ties_away, toward_zero, up, down): every exact tier against the golden model, with
group sums and accumulator adds at the accumulator's ties, wide exponent spans and overflow."""

import math
from fractions import Fraction

import pytest
import torch

from conftest import same_bits
from vitaccel.arith import AcceleratorConfig, FloatFormat, emulated_matmul, floatpath, golden, matmul_tier
from vitaccel.arith.config import ACCUMULATORS, OPERAND_ROUNDINGS
from vitaccel.configtools import ConfigError

ACCS = ["fp16", "bf16", "tf32", "fp24", "fp32"]


def config(acc: str = "fp16", rounding: str = "nearest_even", align_bits: int | None = None, a: str = "e5m7",
           b: str = "e8m7", group: int = 16) -> AcceleratorConfig:
    return AcceleratorConfig.from_dict({"name": f"acc-{acc}", "datapath": "float", "float_datapath": {
        "a_format": a, "b_format": b, "accumulator": acc, "operand_rounding": rounding, "align_bits": align_bits,
        "group_size": group}})


def _tiers(cfg: AcceleratorConfig) -> list[str]:
    return ["faithful"] if cfg.float_datapath.align_bits is not None else ["tiled"]


def _spread(shape: tuple[int, int], seed: int, binades: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = torch.exp2(torch.randint(-binades, binades + 1, shape, generator=g).float())
    return torch.randn(shape, generator=g) * scale


@pytest.mark.parametrize("align_bits", [None, 6, 30])
@pytest.mark.parametrize("rounding", OPERAND_ROUNDINGS)
@pytest.mark.parametrize("acc", ACCS)
def test_every_accumulator_and_operand_rounding_equal_golden(acc, rounding, align_bits):
    """Random operands over up to 2^+-40 (wide rows and columns: the banded sums) in every tier."""
    cfg = config(acc, rounding, align_bits)
    a, b = _spread((3, 70), seed=1, binades=12), _spread((70, 4), seed=2, binades=12)
    a[1] *= 2.0 ** 25  # one row spanning far more binades than a float64 product sum holds
    expected = golden.matmul(a, b, cfg)
    for tier in _tiers(cfg):
        assert same_bits(emulated_matmul(a, b, cfg, tier=tier), expected), (acc, rounding, tier)
    assert same_bits(emulated_matmul(a, b, cfg, exact=False), expected) or acc == "fp32"


@pytest.mark.parametrize("acc", ["fp16", "bf16", "tf32", "fp24"])
def test_group_sums_at_an_accumulator_tie_are_rounded_once(acc):
    """An exact group sum just above a tie of the accumulator (1 + half an ulp + 2^-60): rounding it
    to float32 first would land on the tie and round down; the tiers round it once, up, like golden.
    Also an accumulator add exactly at a tie (to even) and one just past it."""
    fmt = FloatFormat.named(acc)
    half = 2.0 ** (-fmt.man_bits - 1)
    z = [0.0] * 13
    a = torch.tensor([[1.0, half, 2.0 ** -60] + z + [0.0] * 16,       # one group just above a tie: up
                      [1.0, half, 0.0] + z + [0.0] * 16,              # a tie: to even (down)
                      [1.0, 2 * half, 0.0] + z + [half] + [0.0] * 15,  # an add at a tie: to even (up)
                      [1.0, 0.0, 0.0] + z + [half, 2.0 ** -60] + [0.0] * 14])  # group rounded first: a tie
    b = torch.ones(a.shape[1], 1)
    cfg = config(acc, a="e8m7", b="e8m7")
    expected = golden.matmul(a, b, cfg)
    assert expected[:, 0].tolist() == [1 + 2 * half, 1.0, 1 + 4 * half, 1.0]
    assert same_bits(emulated_matmul(a, b, cfg), expected)
    aligned = config(acc, align_bits=40, a="e8m7", b="e8m7")
    assert same_bits(emulated_matmul(a, b, aligned), golden.matmul(a, b, aligned))


def test_narrow_accumulators_overflow_to_infinity_as_golden():
    a = torch.full((2, 48), 60000.0)
    a[1, 20:] = -60000.0
    b = torch.full((48, 3), 1.0)
    for acc in ("fp16", "bf16"):
        cfg = config(acc, a="e5m10", b="e5m10")
        expected = golden.matmul(a, b, cfg)
        assert same_bits(emulated_matmul(a, b, cfg), expected)
    fp16 = golden.matmul(a, b, config("fp16", a="e5m10", b="e5m10"))
    assert math.isinf(float(fp16[0, 0])) and math.isnan(float(fp16[1, 0]))  # inf, then inf - inf


def test_specials_pass_through_every_accumulator():
    a = torch.tensor([[1.0, math.inf, 2.0] + [1.0] * 20, [math.nan] + [1.0] * 22, [3.0] * 23])
    b = torch.ones(23, 2)
    b[5, 1] = -math.inf
    for acc in ACCS:
        cfg = config(acc)
        assert same_bits(emulated_matmul(a, b, cfg), golden.matmul(a, b, cfg)), acc


def test_narrow_accumulator_runs_exact_even_when_exact_is_false():
    cfg = config("bf16")
    assert matmul_tier(cfg, exact=False) == ("tiled", True)
    assert matmul_tier(config("fp32"), exact=False) == ("fast", False)


def test_to_odd_then_nearest_is_the_one_correct_rounding():
    """float64 values (exact, as Fractions) rounded to float32 toward odd and then to each narrow
    accumulator equal their direct rounding: ties, near-ties and values beyond float32's range."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(4000, generator=g, dtype=torch.float64) * torch.exp2(
        torch.randint(-140, 128, (4000,), generator=g).double())
    for acc in ("fp16", "bf16", "tf32", "fp24"):
        fmt = FloatFormat.named(acc)
        grid = fmt.quantize(base.float()).double()
        ulp = torch.exp2(torch.floor(torch.log2(grid.abs().clamp(min=2.0 ** -140))) - fmt.man_bits)
        x = torch.cat([base, grid + ulp / 2, grid + ulp / 2 + ulp * 2.0 ** -30, grid + ulp / 2 - ulp * 2.0 ** -30,
                       torch.tensor([3.4e38, 3.5e38, -1e300, 2.0 ** -149 * 1.5, 0.0], dtype=torch.float64)])
        x = x[torch.isfinite(x)]
        got = floatpath.round_to(fmt, x)
        assert same_bits(got, fmt.quantize(floatpath.to_odd_float32(x)))
        expected = torch.tensor([golden.to_float(golden.round_to(fmt, Fraction(v))) for v in x.tolist()],
                                dtype=torch.float64).float()
        assert same_bits(got, expected), acc


def test_accumulate_is_the_correctly_rounded_sum_in_the_accumulator():
    for acc in ("fp16", "bf16", "tf32", "fp24", "fp32"):
        fmt = FloatFormat.named(acc)
        x, y = (fmt.quantize(_spread((3000,), seed, 30)) for seed in (5 + len(acc), 6 + len(acc)))
        y[:100] = -x[:100]
        y[100:110] = math.inf
        expected = torch.tensor([golden.to_float(golden.acc_add(fmt, a, b))
                                 for a, b in zip(x.tolist(), y.tolist())], dtype=torch.float64).float()
        assert same_bits(floatpath.accumulate(x, y, fmt), expected), acc


def test_accumulator_and_operand_rounding_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"float_datapath.accumulator: value 'fp64' is not allowed; choose one of"):
        config("fp64")
    with pytest.raises(ConfigError, match=r"float_datapath.accumulator: value 'e5m2' is not allowed; e5m2 \(8 bits"):
        config("e5m2")
    with pytest.raises(ConfigError, match=r"float_datapath.accumulator: value 'e4m3'.*too narrow or has no infinity"):
        config("e4m3")
    with pytest.raises(ConfigError, match=r"float_datapath.operand_rounding: value 'stochastic' is not allowed; "
                                          r"stochastic operand rounding is not offered"):
        config(rounding="stochastic")
    with pytest.raises(ConfigError, match=r"float_datapath.a_format: value 'fp24' is not allowed"):
        config(a="fp24")
    assert set(ACCS) <= set(ACCUMULATORS) and "e5m7" not in ACCUMULATORS


@pytest.mark.parametrize("acc", ["fp16", "bf16", "tf32", "fp24"])
def test_sums_beyond_two_float64_limbs_come_rounded_to_odd(acc, monkeypatch):
    """bf16 operands over their whole range: the int64-limb sums (``WideSum``) round toward odd for
    a narrow accumulator, and the results equal golden."""
    seen = []
    real = floatpath.WideSum.result
    monkeypatch.setattr(floatpath.WideSum, "result", lambda self, odd=False: seen.append(odd) or real(self, odd))
    g = torch.Generator().manual_seed(11)
    a = torch.randn(5, 40, generator=g) * 2.0 ** torch.randint(-133, 127, (5, 40), generator=g).float()
    b = torch.randn(40, 3, generator=g) * 2.0 ** torch.randint(-133, 0, (40, 3), generator=g).float()
    cfg = config(acc, a="e8m7", b="e8m7")
    assert same_bits(emulated_matmul(a, b, cfg), golden.matmul(a, b, cfg))
    assert seen and all(seen)


def test_cost_model_reads_the_accumulator_width():
    """Partial sums are as wide as the accumulator format; its adds cost between the table's fp16_add
    and fp32_add by significand width (fp32_add for float32, fp16_add for fp16 and tf32)."""
    from vitaccel.measure.hardware import EnergyTable, MatmulShape, cost
    shapes = [MatmulShape(10, 130, 7, count=3)]
    table = EnergyTable.load()
    wide, half, bf16 = (cost(shapes, config(acc, a="e5m7", b="e5m7"), table) for acc in ("fp32", "fp16", "bf16"))
    assert half.psum_bits_written * 2 == wide.psum_bits_written and "fp16" in half.adds and "fp32" in wide.adds
    groups = 10 * 7 * 3 * 9
    assert half.adds["fp16"] == groups
    assert wide.energy_pj["add"] - half.energy_pj["add"] == pytest.approx(groups * (table.fp32_add - table.fp16_add))
    assert bf16.energy_pj["add"] < half.energy_pj["add"]


@pytest.mark.parametrize("acc", ["fp32", "fp16", "tf32"])
def test_tf32_operands_equal_golden_in_every_tier(acc):
    """TF32 operands (TensorFloat-32 matmuls) against TF32, FP13 and bfloat16 ones, wide spans and an
    infinity, every operand rounding's neighbour pair: exact tiers equal golden."""
    g = torch.Generator().manual_seed(len(acc))
    for align, other, rounding in ((None, "tf32", "nearest_even"), (10, "e5m7", "down"), (40, "e8m7", "ties_away")):
        cfg = config(acc, rounding, align, a="tf32", b=other)
        a = _spread((3, 50), seed=int(torch.randint(0, 99, (1,), generator=g)), binades=60)
        b = _spread((50, 3), seed=int(torch.randint(0, 99, (1,), generator=g)), binades=60)
        a[0, 3] = math.inf
        expected = golden.matmul(a, b, cfg)
        assert same_bits(emulated_matmul(a, b, cfg), expected), (acc, align, other)
