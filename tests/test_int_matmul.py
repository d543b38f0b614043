"""emulated_matmul on integer datapaths: every tier bit-identical to golden.matmul, overflow included."""

import pytest
import torch

from conftest import same_bits
from vitaccel.arith import AcceleratorConfig, emulated_matmul, golden, matmul_tier

INT_PRESETS = [p for p in AcceleratorConfig.presets() if AcceleratorConfig.preset(p).datapath == "int"]
TIERS = ["fast", "tiled", "faithful"]


def _config(**dp) -> AcceleratorConfig:
    return AcceleratorConfig.from_dict({"name": "t", "datapath": "int", "int_datapath": dp})


def _operands(m, k, n, seed, batch=(), b_batch=(), loud=True):
    """Heavy-tailed random operands; with ``loud``, row 0 of a and column 0 of b at full scale,
    b's column 0 positive for the first 3/4 of K and negative after: that dot product runs far
    past any narrow register, then comes back."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(*batch, m, k, generator=g) * torch.exp(torch.randn(*batch, m, k, generator=g))
    b = torch.randn(*b_batch, k, n, generator=g)
    if loud:
        a[..., 0, :] = a.abs().max()
        b[..., :, 0] = 1.0
        b[..., 3 * k // 4:, 0] = -1.0
    return a, b


def _check_all_tiers(a, b, config, **scales):
    """Every tier the config allows equals the golden model; returns the result."""
    expected = golden.matmul(a, b, config, **scales)
    tiers = [t for t in TIERS if t != "fast" or matmul_tier(config, k=a.shape[-1]).name == "fast"]
    for tier in tiers:
        got = emulated_matmul(a, b, config, tier=tier, **scales)
        assert same_bits(got, expected), f"{config.name} tier {tier}"
    assert same_bits(emulated_matmul(a, b, config, **scales), expected)
    return expected


@pytest.mark.parametrize("preset", INT_PRESETS)
@pytest.mark.parametrize("shape", [(3, 150, 5), (2, 16, 4), (1, 1, 1), (4, 64, 3), (2, 129, 2)])
def test_presets_equal_golden(preset, shape):
    a, b = _operands(*shape, seed=sum(shape))
    _check_all_tiers(a, b, AcceleratorConfig.preset(preset))


OVERFLOW_CONFIGS = {
    "psum12-saturate": dict(group_size=4, psum_bits=12),
    "psum12-wrap": dict(group_size=4, psum_bits=12, overflow="wrap"),
    "drop5-nearest": dict(psum_bits=10, psum_drop_lsbs=5, psum_rounding="nearest"),
    "drop3-unbiased-lot3": dict(keep_bits=3, keep_rounding="nearest", psum_bits=12, psum_drop_lsbs=3,
                                psum_rounding="unbiased", overflow="wrap"),
    "acc18-saturate": dict(acc_bits=18),
    "acc16-wrap": dict(acc_bits=16, overflow="wrap"),
    "acc20-float-codec": dict(acc_bits=20, keep_bits=5, psum_storage=dict(
        tile_k=32, codec=dict(kind="float", exp_bits=4, man_bits=8))),
    "acc16-trunc-codec-wrap": dict(acc_bits=16, overflow="wrap", group_size=8, psum_storage=dict(
        tile_k=16, codec=dict(kind="trunc", drop_bits=3, rounding="truncate"))),
    "acc19-codec-toward-zero": dict(acc_bits=19, group_size=2, psum_bits=14, psum_storage=dict(
        tile_k=8, codec=dict(kind="float", exp_bits=4, man_bits=6, rounding="toward_zero"))),
    "wide-group": dict(group_size=64, psum_bits=18, acc_bits=20),
    # a storage codec dropping no more than the adder tree did: skipped until the accumulator saturates
    "drop4-trunc3-saturate": dict(group_size=4, psum_bits=10, psum_drop_lsbs=4, psum_rounding="nearest", acc_bits=14,
                                  psum_storage=dict(tile_k=8, codec=dict(kind="trunc", drop_bits=3))),
    "drop4-trunc4-wrap": dict(group_size=4, psum_bits=10, psum_drop_lsbs=4, acc_bits=13, overflow="wrap",
                              psum_storage=dict(tile_k=4, codec=dict(kind="trunc", drop_bits=4, rounding="truncate"))),
}


@pytest.mark.parametrize("name", list(OVERFLOW_CONFIGS))
def test_configs_that_overflow_equal_golden(name):
    config = _config(**OVERFLOW_CONFIGS[name])
    a, b = _operands(3, 150, 4, seed=len(name), batch=(2,))
    got = _check_all_tiers(a, b, config)
    unbounded = emulated_matmul(a, b, _config(keep_bits=config.int_datapath.keep_bits,
                                               keep_rounding=config.int_datapath.keep_rounding))
    assert not same_bits(got, unbounded)      # the narrow registers really changed the result


def test_saturation_is_sequential_not_a_final_clamp():
    """The loud dot product saturates on the way up and comes back down: the K order matters."""
    config = _config(acc_bits=20)
    a, b = _operands(2, 200, 2, seed=5)
    got = _check_all_tiers(a, b, config)
    scale = float(a.abs().max()) / 127 * (1.0 / 127)
    acc = got[0, 0].item() / scale
    # saturated at 2^19 - 1 by group 3; the group holding the flip at k=150 adds 6 - 10 products,
    # the last 40 products are negative: a clamp of the total would give 2^19 - 1 instead
    assert acc == pytest.approx(2 ** 19 - 1 + (6 - 10 - 40) * 127 * 127, rel=1e-6)


def test_long_k_uses_exact_chunks_and_guards():
    a, b = _operands(2, 2500, 3, seed=6)
    _check_all_tiers(a, b, AcceleratorConfig.preset("int8"))            # float32 chunks of 1040
    _check_all_tiers(a, b, AcceleratorConfig.preset("int8-lot4-psum"))  # 24-bit accumulator saturates
    assert matmul_tier("int8", k=2500) == ("fast", True)
    assert matmul_tier("int8", k=200000) == ("tiled", True)


@pytest.mark.parametrize("preset", ["int8-lot4", "int8-lot4-psum"])
def test_batch_dims_and_broadcasting(preset):
    config = AcceleratorConfig.preset(preset)
    a, b = _operands(3, 70, 4, seed=7, batch=(2, 3))
    _check_all_tiers(a, b, config)
    a, b = _operands(3, 70, 4, seed=8, batch=(2, 1), b_batch=(3,))
    got = _check_all_tiers(a, b, config)
    assert got.shape == (2, 3, 3, 4)
    a, b = _operands(3, 40, 4, seed=9, b_batch=(2,))
    assert _check_all_tiers(a, b, config).shape == (2, 3, 4)


def test_given_scales():
    config = AcceleratorConfig.preset("int8-lot4-psum")
    a, b = _operands(4, 100, 5, seed=10)
    a_scale = torch.tensor(float(a.abs().max()) / 127 / 4)            # calibrated smaller: clamps
    got = _check_all_tiers(a, b, config, a_scale=a_scale, b_scale=torch.linspace(0.01, 0.02, 5))
    assert not same_bits(got, emulated_matmul(a, b, config))
    _check_all_tiers(a, b, config, a_scale=a_scale, b_scale=torch.tensor(0.015))


def test_scale_codec_compresses_weight_scales():
    config = _config(scale_codec=dict(kind="float", exp_bits=5, man_bits=4, bias=30))
    a, b = _operands(3, 40, 6, seed=11, loud=False)
    got = _check_all_tiers(a, b, config)
    assert not same_bits(got, emulated_matmul(a, b, "int8"))
    tiny = _config(scale_codec=dict(kind="float", exp_bits=3, man_bits=4, bias=0))
    with pytest.raises(ValueError, match="scale_codec rounds a weight scale to 0"):
        emulated_matmul(a, b * 1e-3, tiny)


def test_float64_path_when_float32_matmul_is_not_ieee():
    a, b = _operands(3, 1200, 4, seed=12)
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        for preset in ("int8", "int8-lot4-psum"):
            assert same_bits(emulated_matmul(a, b, preset), golden.matmul(a, b, preset))
    finally:
        torch.set_float32_matmul_precision(previous)


def test_zero_results_are_positive_zero_and_inexact_flag_changes_nothing():
    a = torch.zeros(2, 32)
    b = -torch.rand(32, 3)
    out = emulated_matmul(a, b, "int8")
    assert bool((out == 0).all()) and not bool(torch.signbit(out).any())
    a, b = _operands(3, 40, 2, seed=13)
    for preset in INT_PRESETS:
        assert same_bits(emulated_matmul(a, b, preset, exact=False), emulated_matmul(a, b, preset))
        assert matmul_tier(preset, exact=False).exact


def test_tiers_reported_and_forced():
    assert matmul_tier("int8") == ("fast", True)
    assert matmul_tier("int8-lot4") == ("fast", True)
    assert matmul_tier("int8-lot4-psum") == ("tiled", True)
    assert matmul_tier(_config(psum_bits=12)) == ("tiled", True)
    a, b = torch.randn(2, 8), torch.randn(8, 2)
    with pytest.raises(ValueError, match=r"tier: value 'fast' is not available.*\['tiled', 'faithful'\]"):
        emulated_matmul(a, b, "int8-lot4-psum", tier="fast")
    with pytest.raises(ValueError, match=r"tier: value 'faithful' is not available.*\['tiled'\]"):
        emulated_matmul(a, b, "fp13", tier="faithful")


def test_error_against_float32_follows_the_datapath():
    g = torch.Generator().manual_seed(14)
    a, b = torch.randn(64, 384, generator=g), torch.randn(384, 48, generator=g) * 0.05
    ref = (a.double() @ b.double())

    def sqnr(preset: str) -> float:
        y = emulated_matmul(a, b, preset).double()
        return float(10 * torch.log10(ref.pow(2).sum() / (y - ref).pow(2).sum()))

    int8, lot4, psum = sqnr("int8"), sqnr("int8-lot4"), sqnr("int8-lot4-psum")
    assert 25 < int8 < 45 and lot4 < int8 - 3
    assert abs(psum - lot4) < 0.5                # 15 kept bits of 24: the codec costs little


def test_bad_inputs_are_named():
    a, b = torch.randn(2, 8), torch.randn(8, 3)
    bad = a.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="a holds NaN or inf"):
        emulated_matmul(bad, b, "int8")
    bad = b.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="b holds NaN or inf"):
        emulated_matmul(a, bad, "int8-lot4-psum")
    with pytest.raises(ValueError, match=r"a_scale must be one per-tensor scale \(0-d\), got shape \(2,\)"):
        emulated_matmul(a, b, "int8", a_scale=torch.ones(2))
    with pytest.raises(ValueError, match=r"b_scale must be per tensor \(0-d\) or per output column \(shape \(3,\)\)"):
        emulated_matmul(a, b, "int8", b_scale=torch.ones(4))
    with pytest.raises(ValueError, match="b_scale must hold positive finite scales"):
        emulated_matmul(a, b, "int8", b_scale=-torch.ones(3))
    with pytest.raises(TypeError, match="a_scale must be a floating-point tensor"):
        emulated_matmul(a, b, "int8", a_scale=0.5)


def test_empty_operands_give_empty_or_zero_results():
    assert emulated_matmul(torch.zeros(0, 8), torch.randn(8, 3), "int8-lot4-psum").shape == (0, 3)
    out = emulated_matmul(torch.randn(2, 0), torch.randn(0, 3), "int8")
    assert out.shape == (2, 3) and not bool(out.any())


def test_products_above_2_to_the_24_stay_exact_in_every_tier():
    """Issue 14 defect 1: 16-bit operands form products beyond float32's exact integers; every tier
    (fast included, which the config allows) must still be exact."""
    config = _config(a_bits=16, b_bits=16, acc_bits=48)
    a, b, one = torch.tensor([[32767.0, -32767.0]]), torch.tensor([[32767.0], [32766.0]]), torch.tensor(1.0)
    assert matmul_tier(config, k=2).name == "fast"
    assert _check_all_tiers(a, b, config, a_scale=one, b_scale=one).item() == 32767.0
    a, b = _operands(3, 100, 4, seed=1)
    _check_all_tiers(a, b, config)


@pytest.mark.parametrize("dp", [dict(a_bits=2, b_bits=2, group_size=1, acc_bits=2, overflow="wrap", psum_bits=26),
                                dict(acc_bits=20, overflow="wrap", psum_bits=26, psum_drop_lsbs=1)])
def test_wide_wrapping_partial_sums_stay_exact(dp):
    """Issue 14 defect 5: wrapping a partial-sum register wider than 24 bits must not round in float32."""
    config = _config(**dp)
    one = _check_all_tiers(torch.tensor([[1.0]]), torch.tensor([[1.0]]), config).item()
    assert one == 1.0 or dp["psum_drop_lsbs"]  # the minimal case: tiled gave 0
    g = torch.Generator().manual_seed(0)
    _check_all_tiers(torch.randn(4, 64, generator=g), torch.randn(64, 3, generator=g), config)


@pytest.mark.parametrize("preset,tier", [("int8", "fast"), ("int8", "tiled"), ("int8-psum16", "tiled")])
def test_autocast_does_not_reach_the_emulator(preset, tier):
    """Issue 14 defect 3: under CPU autocast to bfloat16 the integer tiers' float32 matmuls stay float32."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 64, generator=g), torch.randn(64, 8, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = emulated_matmul(a, b, preset, tier=tier)
    assert same_bits(got, golden.matmul(a, b, preset))

