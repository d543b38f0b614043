"""MX block formats as operands of the float datapath: golden.matmul and every float tier bit for bit
(G < 32, = 32, > 32, align_bits, ragged K, specials, float32 extremes), config errors, and whole
models through ``vitaccel.emulate``. The circuits' MX path: tests/test_hw_mx.py."""

import dataclasses

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import vitaccel.emulate
from conftest import same_bits
from test_emulate_helpers import family, main_output, spy_backend
from vitaccel import hw
from vitaccel.arith import AcceleratorConfig, FloatDatapath, emulated_matmul, golden, matmul_tier
from vitaccel.arith.mx import MX_NAMES, MXFormat
from vitaccel.errors import ConfigError, EmulateError


def mx_config(a_format: str, b_format: str, **fp) -> AcceleratorConfig:
    return AcceleratorConfig.from_dict(dict(name="mx", datapath="float",
                                            float_datapath=dict(a_format=a_format, b_format=b_format, **fp)))


def operands(m: int, k: int, n: int, seed: int, spread: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Random operands over 2^-spread .. 2^spread, so blocks get very different scales."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, k, generator=g) * torch.exp2(torch.randint(-spread, spread, (m, k), generator=g).float())
    b = torch.randn(k, n, generator=g) * torch.exp2(torch.randint(-spread, spread, (k, n), generator=g).float())
    return a, b


def tiers(config: AcceleratorConfig) -> list[str]:
    return ["tiled"] if config.float_datapath.align_bits is None else ["faithful"]


# G < block, G = block, G > block (groups spanning blocks), a block that is no multiple of G, ragged K
SHAPES = [dict(group_size=8), dict(group_size=32), dict(group_size=64), dict(group_size=16, mx_block=48),
          dict(group_size=16, align_bits=12), dict(group_size=64, align_bits=20, align_rounding="nearest_even"),
          dict(group_size=4, mx_block=3, align_bits=6)]
PAIRS = [("mxfp8_e4m3", "mxfp8_e4m3"), ("mxfp8_e5m2", "mxfp8_e5m2"), ("mxfp6_e3m2", "mxfp6_e2m3"),
         ("mxfp4", "mxfp4"), ("mxint8", "mxint8"), ("mxfp4", "e5m7"), ("e8m7", "mxint8")]


@pytest.mark.parametrize("a_format,b_format", PAIRS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(f"{k}{v}" for k, v in s.items()))
def test_every_tier_equals_golden(a_format, b_format, shape):
    config = mx_config(a_format, b_format, **shape)
    a, b = operands(3, 77, 5, seed=len(a_format) * 7 + shape["group_size"])  # K = 77: the last block ragged
    ref = golden.matmul(a, b, config)
    assert matmul_tier(config).exact
    for tier in tiers(config):
        assert same_bits(emulated_matmul(a, b, config, tier=tier), ref), tier
        assert same_bits(emulated_matmul(a, b, config, tier=tier, chunk_bytes=1), ref), tier  # one row a chunk


@settings(max_examples=40, deadline=None)
@given(a_format=st.sampled_from(MX_NAMES + ("e5m7", "e4m3")), b_format=st.sampled_from(MX_NAMES),
       k=st.integers(1, 70), log_g=st.integers(0, 6), mx_block=st.integers(1, 40),
       align_bits=st.one_of(st.none(), st.integers(0, 24)), seed=st.integers(0, 2 ** 16),
       spread=st.integers(0, 60))
def test_property_random_mx_datapaths_equal_golden(a_format, b_format, k, log_g, mx_block, align_bits, seed, spread):
    config = mx_config(a_format, b_format, group_size=2 ** log_g, mx_block=mx_block, align_bits=align_bits)
    a, b = operands(2, k, 3, seed=seed, spread=max(spread, 1))
    assert same_bits(emulated_matmul(a, b, config), golden.matmul(a, b, config))


def test_block_scale_applies_per_block_along_k():
    """Blocks along K: a's rows and b's columns each get their own scale per 32 of K; scaling one
    block of a row by 2^10 scales exactly its part of the dot product (elements unchanged)."""
    config = AcceleratorConfig.preset("mxfp8")
    a, b = operands(2, 64, 3, seed=4, spread=3)
    fmt = MXFormat.named("mxfp8_e4m3")
    qa, qb = fmt.quantize(a, axis=-1), fmt.quantize(b, axis=-2)
    a2 = a.clone()
    a2[:, 32:] *= 2.0 ** 10
    qa2 = fmt.quantize(a2, axis=-1)
    assert torch.equal(qa2[:, :32], qa[:, :32]) and torch.equal(qa2[:, 32:], qa[:, 32:] * 2.0 ** 10)
    want = (qa2.double() @ qb.double())
    got = emulated_matmul(a2, b, config)
    assert torch.allclose(got.double(), want, rtol=2 ** -22, atol=0)
    assert same_bits(got, golden.matmul(a2, b, config))


def test_specials_and_float32_extremes_equal_golden():
    """NaN and inf blocks (NaN scale), group sums beyond float32 (inf), products below float32's
    subnormals, zero blocks and -0: every tier against golden."""
    f32max = torch.finfo(torch.float32).max
    a, b = operands(4, 70, 3, seed=9, spread=5)
    a[0, 3] = float("nan")
    a[1, 40] = float("inf")
    a[2, :32] = f32max / 4
    b[:32, 1] = f32max / 2
    a[3, :32] = 2.0 ** -130
    b[:, 2] = 2.0 ** -120
    b[35:70, 0] = -0.0
    for pair in PAIRS[:5]:
        for shape in (dict(group_size=16), dict(group_size=64, align_bits=18)):
            config = mx_config(*pair, **shape)
            ref = golden.matmul(a, b, config)
            assert ref[0].isnan().all() and torch.isinf(ref[2, 1])
            for tier in tiers(config):
                assert same_bits(emulated_matmul(a, b, config, tier=tier), ref), (pair, shape, tier)


def test_batched_operands_and_an_activation_second_operand():
    """Attention-style products: a (B, M, K) and b (B, K, N) both quantised in blocks along K."""
    config = AcceleratorConfig.preset("mxfp4")
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(2, 3, 40, generator=g), torch.randn(2, 40, 4, generator=g)
    assert same_bits(emulated_matmul(a, b, config), golden.matmul(a, b, config))


def test_fast_tier_is_within_its_bound():
    from vitaccel.arith import fast_error_bound
    config = AcceleratorConfig.preset("mxfp8")
    a, b = operands(8, 96, 6, seed=2, spread=4)
    fmt = MXFormat.named("mxfp8_e4m3")
    exact, fast = emulated_matmul(a, b, config), emulated_matmul(a, b, config, exact=False)
    bound = fast_error_bound(fmt.quantize(a, axis=-1), fmt.quantize(b, axis=-2), 32)
    assert matmul_tier(config, exact=False).name == "fast"
    assert ((fast.double() - exact.double()).abs() <= bound).all()


# -- configs ------------------------------------------------------------------------------------
def test_config_names_the_key_for_bad_mx_settings():
    with pytest.raises(ConfigError, match=r"float_datapath.a_format.*'mxfp5'.*mxfp8_e4m3"):
        mx_config("mxfp5", "e5m7")
    with pytest.raises(ConfigError, match=r"float_datapath.mx_block: value 16 is only used by MX operand formats"):
        mx_config("e5m7", "e4m3", mx_block=16)
    with pytest.raises(ConfigError, match=r"mx_block.*0"):
        mx_config("mxfp4", "mxfp4", mx_block=0)
    assert mx_config("mxfp4", "e5m7", mx_block=16).float_datapath.mx_block == 16
    choices = {f.name: f.metadata["choices"] for f in dataclasses.fields(FloatDatapath)}
    assert set(MX_NAMES) <= set(choices["a_format"]) and set(MX_NAMES) <= set(choices["b_format"])


@pytest.mark.parametrize("preset", ["mxfp8", "mxfp4"])
def test_presets_load_round_trip_build_circuits_and_recording_refuses_them(preset):
    config = AcceleratorConfig.preset(preset)
    assert AcceleratorConfig.from_dict(yaml.safe_load(config.to_yaml())) == config
    unit = hw.build(config).dot_unit()
    unit._MustUse__silence = True                         # inspected, never elaborated
    assert {"a_scale", "b_scale"} <= set(unit.signature.members)
    from vitaccel.emulate.recording import Recorder
    with pytest.raises(EmulateError, match="float_datapath.a_format"):
        Recorder(config)


def test_the_cost_model_charges_element_bits_and_the_shared_scale():
    from vitaccel.measure.hardware import MatmulShape, cost
    c8, c4 = cost([MatmulShape(4, 64, 8)], "mxfp8"), cost([MatmulShape(4, 64, 8)], "mxfp4")
    assert c8.operand_bits == (4 * 64 + 64 * 8) * (8 + 8 / 32) and c4.operand_bits == (4 * 64 + 64 * 8) * (4 + 8 / 32)
    assert c8.energy_pj["multiply"] > c4.energy_pj["multiply"]


# -- whole models ---------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["mxfp8", "mxfp4"])
def test_timm_vit_every_product_is_the_mx_emulated_matmul(preset):
    """A small timm ViT (fused attention): every product goes through the MX backend and equals a
    fresh exact emulated_matmul; the output moves from float32, MXFP8 less than MXFP4."""
    model, args, kwargs = family("timm-deit")
    with torch.no_grad():
        reference = main_output(model(*args))
    backend, calls = spy_backend(preset, exact=True)
    with vitaccel.emulate(model, backend, stats=False) as run, torch.no_grad():
        out = main_output(model(*args))
    assert not run.report().native and len(calls) > 0
    config = AcceleratorConfig.preset(preset)
    for a, b, _, _, got in calls:
        assert same_bits(got, emulated_matmul(a, b, config))
    sqnr = 10 * torch.log10(reference.pow(2).sum() / (out - reference).pow(2).sum())
    assert not torch.equal(out, reference) and sqnr > (15 if preset == "mxfp8" else 5), float(sqnr)  # 18.2, 7.8 dB


def test_empty_operands():
    for shape_a, shape_b in (((3, 0), (0, 2)), ((0, 5), (5, 2)), ((2, 5), (5, 0))):
        a, b = torch.ones(shape_a), torch.ones(shape_b)
        for preset in ("mxfp8", "mxfp4"):
            got = emulated_matmul(a, b, preset)
            assert torch.equal(got, torch.zeros(shape_a[0], shape_b[1]))  # K = 0: zeros, else empty
    assert MXFormat.named("mxint8").quantize(torch.zeros(0, 4)).shape == (0, 4)


def test_mx_operands_refuse_other_operand_roundings_at_config_load():
    with pytest.raises(ConfigError, match=r"float_datapath.operand_rounding: value 'ties_away' is not allowed with MX"):
        AcceleratorConfig.from_dict({"name": "x", "datapath": "float",
                                     "float_datapath": {"a_format": "mxfp8_e4m3", "operand_rounding": "ties_away"}})
