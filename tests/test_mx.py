"""OCP MX v1.0 block formats (arith/mx.py): the spec's tables and conversion rule, every code, ties,
saturation, zeros, -0, NaN/inf, subnormal elements, scales at E8M0's limits, ragged blocks, the
golden model (hypothesis), and torchao's MX where it follows the spec."""

import math
import warnings
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_float32, same_bits
from vitaccel.arith import FloatFormat, golden
from vitaccel.arith.mx import E8M0_NAN, MX_NAMES, MXFormat, decode_scale
from vitaccel.errors import UserError

FLOATS = [n for n in MX_NAMES if n != "mxint8"]

# OCP MX v1.0 section 5.3 (element data types: FP8 from the OFP8 spec, Tables of FP6 and FP4, INT8)
# and section 6.3's emax_elem: (max normal, smallest subnormal, emax_elem)
SPEC_TABLE = {
    "mxfp8_e5m2": (57344.0, 2.0 ** -16, 15),
    "mxfp8_e4m3": (448.0, 2.0 ** -9, 8),
    "mxfp6_e3m2": (28.0, 2.0 ** -4, 4),
    "mxfp6_e2m3": (7.5, 2.0 ** -3, 2),
    "mxfp4": (6.0, 0.5, 2),
    "mxint8": (1 + 63 / 64, 2.0 ** -6, 0),
}


def golden_rows(fmt: MXFormat, x: torch.Tensor, rounding: str = "nearest_even") -> torch.Tensor:
    """golden.mx_quantize of every row of a 2-D x (blocks along the last axis)."""
    rows = [[golden.to_float(v) for v in golden.mx_quantize(fmt, row, rounding)] for row in x.double().tolist()]
    return torch.tensor(rows, dtype=torch.float64).float().reshape(x.shape)


def block(values, n: int = 32) -> torch.Tensor:
    """One block: the values, then zeros up to n."""
    x = torch.zeros(n)
    x[:len(values)] = torch.tensor(values, dtype=torch.float32)
    return x


# -- the spec's tables ------------------------------------------------------------------------
@pytest.mark.parametrize("name", MX_NAMES)
def test_element_tables_of_section_5_3(name):
    fmt = MXFormat.named(name)
    top, tiny, emax = SPEC_TABLE[name]
    assert (fmt.element_max, fmt.element_min, fmt.emax_elem) == (top, tiny, emax)
    assert fmt.block == 32 and fmt.bits == {"mxfp8": 8, "mxfp6": 6, "mxfp4": 4, "mxint8": 8}[name.split("_")[0]]


def test_e8m0_every_code_equals_torch_float8_e8m0fnu():
    """Section 5.4: 2^(code - 127) for 0..254 (2^-127 is a float32 subnormal), 0xFF is NaN."""
    codes = torch.arange(256)
    ours = decode_scale(codes)
    assert same_bits(ours, codes.to(torch.uint8).view(torch.float8_e8m0fnu).float())
    assert ours[0] == 2.0 ** -127 and ours[127] == 1.0 and ours[254] == 2.0 ** 127 and ours[255].isnan()


@pytest.mark.parametrize("name", FLOATS)
def test_every_element_code_decodes_as_its_float_format(name):
    """With scale 1 (code 127) each element code is the FloatFormat's value (golden.decode too);
    with every other scale code it is that value times 2^(code - 127), exact or +-inf beyond float32."""
    fmt = MXFormat.named(name, block=1)
    ef = fmt.element_format
    plain = FloatFormat(ef.exp_bits, ef.man_bits, specials=ef.specials)   # the non-saturating twin
    codes = torch.arange(2 ** ef.bits)
    one = fmt.decode(codes, torch.full((len(codes),), 127, dtype=torch.uint8))
    assert same_bits(one, plain.decode(codes))
    assert same_bits(one, torch.tensor([golden.to_float(golden.decode(plain, int(c))) for c in codes]).float())
    for s in (0, 1, 100, 200, 254):
        got = fmt.decode(codes, torch.full((len(codes),), s, dtype=torch.uint8))
        want = (plain.decode(codes).double() * 2.0 ** (s - 127)).float()
        assert same_bits(got, want)
    assert fmt.decode(codes, torch.full((len(codes),), E8M0_NAN, dtype=torch.uint8)).isnan().all()


def test_every_int8_element_code_is_twos_complement_over_64():
    fmt = MXFormat.named("mxint8", block=1)
    codes = torch.arange(256)
    got = fmt.decode(codes, torch.full((256,), 127, dtype=torch.uint8))
    want = torch.tensor([(c - 256 if c >= 128 else c) / 64 for c in range(256)], dtype=torch.float32)
    assert same_bits(got, want + 0.0) and got[0x80] == -2.0 and got[0x7F] == 127 / 64


# -- worked examples of the section 6.3 conversion (computed by hand from its algorithm) ----------
def test_mxfp4_example_round_to_nearest_even_and_clamp():
    # max 7.9: shared_exp = floor(log2 7.9) - 2 = 0, X = 1 (code 127); E2M1 values 0 .5 1 1.5 2 3 4 6
    x = block([0.3, -1.7, 7.9, 0.25, 0.75, 2.5, 5.0, -5.1, 1.25])
    enc = MXFormat.named("mxfp4").encode(x)
    assert enc.scales.tolist() == [127]
    q = MXFormat.named("mxfp4").quantize(x)
    # 0.25 ties 0 / 0.5 -> 0 (even); 0.75 ties .5 / 1 -> 1; 2.5 ties 2 / 3 -> 2; 5 ties 4 / 6 -> 4;
    # 1.25 ties 1 / 1.5 -> 1; 7.9 clamps to 6
    assert q[:9].tolist() == [0.5, -1.5, 6.0, 0.0, 1.0, 2.0, 4.0, -6.0, 1.0]
    assert enc.elements[:3].tolist() == [0b0001, 0b1011, 0b0111]


def test_mxfp8_e4m3_example_scale_and_saturation():
    # max 1000: shared_exp = 9 - 8 = 1, X = 2 (code 128); 1000 / 2 = 500 clamps to 448 -> 896;
    # 1.0625 * 2: 1.0625 ties 1 / 1.125 -> 1 (even) -> 2; 1.1875 ties 1.125 / 1.25 -> 1.25 -> 2.5
    x = block([1000.0, 2.125, 2.375, -0.0, 2.0 ** -9 * 2, 2.0 ** -10 * 2])
    fmt = MXFormat.named("mxfp8_e4m3")
    assert fmt.encode(x).scales.tolist() == [128]
    q = fmt.quantize(x)
    assert q[:6].tolist() == [896.0, 2.0, 2.5, 0.0, 2.0 ** -8, 0.0]
    assert math.copysign(1, q[3]) == -1  # -0 keeps its sign
    assert fmt.encode(x).elements[:2].tolist() == [0x7E, 0x38]   # 448 = S.1111.110, 1.0 = S.0111.000


def test_mxint8_example_symmetric_clamp_and_ties():
    # max 1.99: shared_exp = 0 - 0 = 0; 1.99 * 64 = 127.36 -> 127; 1.5/64 ties 1 / 2 -> 2; -0 -> 0
    x = block([1.5, 0.01, -1.99, 1.5 / 64, 2.5 / 64, -0.0, 1.999])
    fmt = MXFormat.named("mxint8")
    enc = fmt.encode(x)
    assert enc.scales.tolist() == [127]
    assert enc.elements[:7].tolist() == [96, 1, 0x81, 2, 2, 0, 127]
    assert same_bits(fmt.quantize(x)[:7], torch.tensor([1.5, 1 / 64, -127 / 64, 2 / 64, 2 / 64, 0.0, 127 / 64]))


def test_mxfp8_e5m2_saturates_instead_of_infinity():
    # max 65000 (below 2^16): shared_exp = 15 - 15 = 0; 65000 rounds past 57344 in E5M2: clamped, not inf
    x = block([65000.0, 61440.0, -60000.0, 2.0 ** -17, 1.5 * 2.0 ** -16])
    q = MXFormat.named("mxfp8_e5m2").quantize(x)
    assert q[:5].tolist() == [57344.0, 57344.0, -57344.0, 0.0, 2.0 ** -15]  # ties to even subnormals


def test_zero_block_nan_block_inf_block_and_scales_at_e8m0_limits():
    fmt = MXFormat.named("mxfp8_e4m3", block=4)
    f32max = torch.finfo(torch.float32).max
    x = torch.tensor([0.0, -0.0, 0.0, 0.0,                # zeros: code 0, signs kept
                      1.0, float("nan"), 2.0, 3.0,        # NaN: scale NaN (0xFF), all NaN
                      1.0, -float("inf"), 0.0, 5.0,       # inf: scale NaN too
                      f32max, -f32max, 1.0, 0.0,          # floor(log2 max) = 127: 127 - 8 = 119 (code 246)
                      2.0 ** -140, 2.0 ** -149, 0.0, 0.0,  # float32 subnormals: shared_exp clamped to -127 (code 0)
                      2.0 ** -128, 0.0, 0.0, 0.0])        # V / 2^-127 = 0.5 -> element 0.5 (a normal)
    enc = fmt.encode(x)
    assert enc.scales.tolist() == [0, E8M0_NAN, E8M0_NAN, 246, 0, 0]
    q = fmt.quantize(x)
    assert same_bits(q[:4], torch.tensor([0.0, -0.0, 0.0, 0.0]))
    assert q[4:12].isnan().all()
    assert q[12:16].tolist() == [448 * 2.0 ** 119, -448 * 2.0 ** 119, 0.0, 0.0]
    assert q[16:20].tolist() == [0.0, 0.0, 0.0, 0.0] and q[20] == 2.0 ** -128
    assert same_bits(fmt.decode(*enc), q)
    # MXINT8 reaches the top scale code: max ~2^128 gives shared_exp 127 - 0 = 127 (code 254)
    i8 = MXFormat.named("mxint8", block=2)
    e = i8.encode(torch.tensor([f32max, 2.0 ** 121]))
    assert e.scales.tolist() == [254] and e.elements.tolist() == [127, 1]


def test_subnormal_elements_at_the_smallest_scale():
    """Scale code 0 (2^-127) with subnormal elements: every E2M3 subnormal times 2^-127 is a float32
    value, and the ties between them round to even."""
    fmt = MXFormat.named("mxfp6_e2m3", block=8)
    steps = torch.tensor([1, 2, 3, 4, 5, 6, 7, 0.5, 1.5, 2.5], dtype=torch.float64) * 2.0 ** -3
    x = (steps * 2.0 ** -127).float()
    q = fmt.quantize(x)
    want = torch.tensor([1, 2, 3, 4, 5, 6, 7, 0, 2, 2], dtype=torch.float64) * 2.0 ** -130
    assert same_bits(q, want.float()) and fmt.encode(x).scales.tolist() == [0, 0]


def test_ragged_last_block_has_its_own_scale():
    fmt = MXFormat.named("mxfp8_e4m3")
    x = torch.cat([torch.full((32,), 300.0), torch.full((8,), 0.01)])
    enc = fmt.encode(x)
    assert enc.scales.tolist() == [127 + 0, 127 + (-7 - 8)]        # floor(log2 0.01) = -7
    assert enc.scales.shape == (2,) and same_bits(fmt.decode(*enc), fmt.quantize(x))
    assert torch.equal(fmt.quantize(x)[32:], MXFormat.named("mxfp8_e4m3", block=8).quantize(x[32:]))


def test_axis_moves_the_blocks():
    fmt = MXFormat.named("mxfp6_e3m2", block=4)
    x = torch.randn(6, 10, 3, generator=torch.Generator().manual_seed(3))
    along1 = fmt.quantize(x, axis=1)
    assert same_bits(along1, fmt.quantize(x.transpose(1, 2).contiguous(), axis=-1).transpose(1, 2))
    enc = fmt.encode(x, axis=-2)
    assert enc.scales.shape == (6, 3, 3) and same_bits(fmt.decode(*enc, axis=1), along1)


# -- every value, against the golden model ---------------------------------------------------------
@pytest.mark.parametrize("name", MX_NAMES)
@pytest.mark.parametrize("rounding", ["nearest_even", "toward_zero"])
def test_all_element_values_ties_and_overflow_against_golden(name, rounding):
    """Blocks holding the element max (so X = 2^s) with every element value, every midpoint between
    neighbours (ties), values past the max and below the smallest subnormal, over several scales."""
    fmt = MXFormat.named(name, block=64)
    if fmt.element == "int8":
        values = torch.arange(-127, 128, dtype=torch.float64) / 64
    else:
        ef = fmt.element_format
        values = ef.decode(torch.arange(2 ** ef.bits)).double()
        values = values[torch.isfinite(values)].unique()
    mids = (values[:-1] + values[1:]) / 2
    extra = torch.tensor([fmt.element_max * 1.01, fmt.element_max * 1.999, fmt.element_min / 2,
                          fmt.element_min / 3, -fmt.element_max * 1.5], dtype=torch.float64)
    body = torch.cat([values, mids, extra])
    pad = (-len(body)) % 63
    body = torch.cat([body, torch.zeros(pad, dtype=torch.float64)]).reshape(-1, 63)
    top = torch.full((body.shape[0], 1), fmt.element_max, dtype=torch.float64)
    blocks = torch.cat([top, body], dim=1)
    for s in (-127, -120, -3, 0, 5, 100, 127 - fmt.emax_elem):
        x = (blocks * 2.0 ** s).float()
        got = fmt.quantize(x, rounding=rounding)
        assert same_bits(got, golden_rows(fmt, x, rounding)), s
        assert same_bits(fmt.decode(*fmt.encode(x, rounding=rounding)), got), s


@pytest.mark.parametrize("name", MX_NAMES)
def test_random_float32_over_all_binades_against_golden(name):
    """Every binade plus specials (NaN, inf, float32 max, subnormals) in blocks of 32 and a ragged tail."""
    fmt = MXFormat.named(name)
    x = random_float32(3000, seed=7)[:3040].reshape(32, -1)
    got = fmt.quantize(x)
    assert same_bits(got, golden_rows(fmt, x))
    assert same_bits(fmt.decode(*fmt.encode(x)), got)
    shared = [golden.mx_shared_exponent(fmt, row[i:i + 32]) for row in x.double().tolist()
              for i in range(0, x.shape[1], 32)]
    assert fmt.encode(x).scales.flatten().tolist() == [E8M0_NAN if s is None else s + 127 for s in shared]


finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
any32 = st.floats(width=32)


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(MX_NAMES), size=st.integers(1, 40),
       values=st.lists(st.one_of(finite32, any32, st.sampled_from([0.0, -0.0, 448.0, 6.0, 2.0 ** -127])),
                       min_size=1, max_size=90),
       rounding=st.sampled_from(["nearest_even", "toward_zero"]))
def test_property_quantize_equals_the_scalar_golden_model(name, size, values, rounding):
    fmt = MXFormat.named(name, block=size)
    x = torch.tensor(values, dtype=torch.float32)
    got = fmt.quantize(x, rounding=rounding)
    want = torch.tensor([golden.to_float(v) for v in golden.mx_quantize(fmt, values, rounding)]).float()
    assert same_bits(got, want)
    assert same_bits(fmt.decode(*fmt.encode(x, rounding=rounding)), got)


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(MX_NAMES), values=st.lists(finite32, min_size=1, max_size=64))
def test_property_quantize_is_idempotent_and_scales_are_the_spec_rule(name, values):
    """Requantising keeps every value (the block max still has floor(log2) = shared_exp + emax_elem);
    each scale is 2^(floor(log2 max|V|) - emax_elem), clamped."""
    fmt = MXFormat.named(name, block=16)
    x = torch.tensor(values, dtype=torch.float32)
    q = fmt.quantize(x)
    assert same_bits(fmt.quantize(q), q)
    for i, code in enumerate(fmt.encode(x).scales.tolist()):
        amax = max(abs(Fraction(v)) for v in values[16 * i:16 * i + 16])
        want = -127 if amax == 0 else max(-127, golden.exponent(amax) - fmt.emax_elem)
        assert code == want + 127


def test_float64_input_equals_float32_input_of_the_same_values():
    x = random_float32(2000, seed=11)[:2048]
    for name in MX_NAMES:
        fmt = MXFormat.named(name)
        assert same_bits(fmt.quantize(x.double()), fmt.quantize(x))


# -- bad input ---------------------------------------------------------------------------------
def test_bad_input_names_the_argument():
    with pytest.raises(UserError, match=r"MX format name 'mxfp5' is unknown; choose one of \['mxfp8_e5m2'"):
        MXFormat.named("mxfp5")
    with pytest.raises(UserError, match="block=0 is not allowed"):
        MXFormat("e4m3", 0)
    with pytest.raises(UserError, match="element='e4m4' is not allowed"):
        MXFormat("e4m4")
    fmt = MXFormat.named("mxfp4")
    with pytest.raises(UserError, match=r"axis=2 is not allowed for a tensor of 2 dims; choose an int from -2 to 1"):
        fmt.quantize(torch.zeros(3, 4), axis=2)
    with pytest.raises(UserError, match="rounding='stochastic' is not allowed for MX formats"):
        fmt.encode(torch.zeros(4), rounding="stochastic")
    with pytest.raises(UserError, match=r"scales: shape \(3,\) does not fit elements of shape \(40,\)"):
        fmt.decode(torch.zeros(40, dtype=torch.int16), torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="x must be a real floating-point tensor"):
        fmt.quantize(torch.zeros(4, dtype=torch.int32))
    with pytest.raises(UserError, match="0-d tensor"):
        fmt.quantize(torch.tensor(1.0))


# -- torchao's MX (prototype.mx_formats), where it follows the spec and where not -------------------
def _torchao():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchao.prototype.mx_formats import constants
            from torchao.prototype.mx_formats.mx_tensor import to_dtype, to_mx
    except ImportError:
        pytest.skip("torchao is not installed")
    return to_mx, to_dtype, {"mxfp8_e4m3": torch.float8_e4m3fn, "mxfp8_e5m2": torch.float8_e5m2,
                             "mxfp6_e2m3": constants.DTYPE_FP6_E2M3, "mxfp6_e3m2": constants.DTYPE_FP6_E3M2,
                             "mxfp4": torch.float4_e2m1fn_x2}


@pytest.mark.parametrize("name", FLOATS)
def test_torchao_floor_mode_equals_the_spec_on_normal_blocks(name):
    """torchao's default FLOOR scale and its saturating RNE casts give our scale codes and values on
    random blocks over 2^-30 .. 2^30, zero blocks and NaN blocks."""
    to_mx, to_dtype, dtypes = _torchao()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, 256, generator=g) * torch.exp2(torch.randint(-30, 30, (64, 256), generator=g).float())
    x[0, :32] = 0.0
    x[2, 40] = float("nan")
    scale, data = to_mx(x, dtypes[name], 32)
    ours = MXFormat.named(name).encode(x)
    assert torch.equal(scale.view(torch.uint8), ours.scales)
    assert same_bits(to_dtype(data, scale, dtypes[name], 32, torch.float32), MXFormat.named(name).quantize(x))


@pytest.mark.parametrize("name", ["mxfp8_e4m3", "mxfp4"])
def test_torchao_departs_on_infinite_and_tiny_blocks(name):
    """Where torchao is not the spec as implemented here: an infinity in a block gives it the scale
    2^(128 - emax_elem) (not NaN) and saturates the infinity; a block whose scale is code 0 (2^-127)
    has its elements computed against 2^-126 (its float scale is clamped to the smallest normal), so
    to_dtype returns half of what the codes mean."""
    to_mx, to_dtype, dtypes = _torchao()
    fmt = MXFormat.named(name)
    x = torch.zeros(2, 32)
    x[0, 0], x[0, 1] = float("inf"), 1.0
    x[1, 0], x[1, 1] = 5.0 * 2.0 ** -127, 3.0 * 2.0 ** -127
    scale, data = to_mx(x, dtypes[name], 32)
    theirs = to_dtype(data, scale, dtypes[name], 32, torch.float32)
    assert scale.view(torch.uint8).flatten().tolist() == [255 - fmt.emax_elem, 0]
    assert fmt.encode(x).scales.tolist() == [[E8M0_NAN], [0]]
    assert theirs[0, 0] == fmt.element_max * 2.0 ** (128 - fmt.emax_elem) and fmt.quantize(x)[0].isnan().all()
    ours = fmt.quantize(x)[1, :2]
    assert ours.tolist() == [golden.to_float(v) for v in golden.mx_quantize(fmt, x[1, :2].tolist())]
    assert not same_bits(theirs[1, :2], ours)


def test_floor_log2_is_exact_just_below_a_power_of_two():
    """max |V| = 2^20 - 2^-4: floor(log2) is 19 (shared_exp 11 for E4M3), where float32 log2 (the route
    microxcaling takes) rounds to 20.0; the value then rounds up to the element max 448 * 2^11."""
    x = block([2.0 ** 20 - 2.0 ** -4, 2.0 ** -20 * (1 - 2.0 ** -24)])
    assert torch.floor(torch.log2(x[:1])).item() == 20.0
    fmt = MXFormat.named("mxfp8_e4m3")
    assert fmt.encode(x).scales.tolist() == [127 + 19 - 8]
    assert fmt.quantize(x)[0] == 448 * 2.0 ** 11
    assert fmt.encode(x[1:2]).scales.tolist() == [127 - 21 - 8]


@pytest.mark.parametrize("rounding", ["nearest_even", "toward_zero"])
@pytest.mark.parametrize("name", MX_NAMES)
def test_fused_pass_equals_the_torch_path(name, rounding, monkeypatch):
    """Blocks along the last axis of a float32 CPU tensor take one fused pass (``_fastround.mx_quantize``);
    its bits are the torch path's (blocks along axis 0 of the transpose) on activations, weights,
    zeros, NaN and infinite blocks, subnormals and a ragged last block."""
    from vitaccel.arith import _fastround
    calls = []
    real = _fastround.mx_quantize
    monkeypatch.setattr(_fastround, "mx_quantize", lambda *a: calls.append(1) or real(*a))
    g = torch.Generator().manual_seed(4)
    x = torch.cat([torch.randn(20, 200, generator=g), torch.randn(20, 200, generator=g) * 0.02,
                   random_float32(4000, seed=5)[:4000].reshape(20, 200), torch.zeros(2, 200)])
    x[3, 40] = float("nan")
    x[5, 70] = float("inf")
    x[7, 100:130] = 2.0 ** -140
    fmt = MXFormat.named(name)
    fused = fmt.quantize(x, rounding=rounding)
    assert calls == [1]
    assert same_bits(fused, fmt.quantize(x.t().contiguous(), axis=0, rounding=rounding).t())
    assert same_bits(fused, fmt.decode(*fmt.encode(x, rounding=rounding)))
