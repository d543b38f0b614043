"""AcceleratorConfig: every preset loads and round-trips through YAML; invalid configs fail at load
with messages that name the key, the value and what is allowed."""

import pytest
import yaml

from vitaccel.arith import AcceleratorConfig, IntDatapath
from vitaccel.configtools import ConfigError, apply_overrides

PRESETS = AcceleratorConfig.presets()


def test_presets_are_there():
    assert {"fp32", "fp13", "fp13-align16", "fp16", "bf16", "int8", "int8-lot4", "int8-lot4-psum"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_round_trips_through_yaml(name, tmp_path):
    config = AcceleratorConfig.preset(name)
    assert config.name == name and config.description
    again = AcceleratorConfig.from_dict(yaml.safe_load(config.to_yaml()))
    assert again == config
    path = tmp_path / f"{name}.yaml"
    path.write_text(config.to_yaml())
    assert AcceleratorConfig.load(str(path)) == config


def test_int_presets_say_what_they_are():
    lot4 = AcceleratorConfig.preset("int8-lot4").int_datapath
    assert (lot4.keep_bits, lot4.keep_rounding, lot4.acc_bits) == (4, "unbiased", 32)
    psum = AcceleratorConfig.preset("int8-lot4-psum").int_datapath
    assert psum.psum_storage.tile_k == 64 and psum.psum_codec().ratio <= 0.85
    assert AcceleratorConfig.preset("int8").int_datapath == IntDatapath()


def test_defaults_and_overrides():
    config = AcceleratorConfig.from_dict({"datapath": "int"})
    assert config.int_datapath == IntDatapath() and config.float_datapath is None
    data = apply_overrides(yaml.safe_load(AcceleratorConfig.preset("int8-lot4").to_yaml()),
                           ["int_datapath.keep_bits=6", "int_datapath.psum_storage={tile_k: 32}"])
    changed = AcceleratorConfig.from_dict(data)
    assert changed.int_datapath.keep_bits == 6 and changed.int_datapath.psum_storage.tile_k == 32


def _int(**dp):
    return {"datapath": "int", "int_datapath": dp}


FLOAT_CODEC = {"kind": "float", "exp_bits": 4, "man_bits": 15}
INVALID = [
    (_int(keep_bits=9), r"int_datapath\.keep_bits: value 9 is not allowed; at most a_bits \(8\)"),
    (_int(a_bits=6, keep_bits=7), r"int_datapath\.keep_bits: value 7 is not allowed; at most a_bits \(6\)"),
    (_int(a_bits=17), r"int_datapath\.a_bits: value 17 is not allowed; an integer from 2 to 16"),
    (_int(psum_storage={"tile_k": 40}),
     r"int_datapath\.psum_storage\.tile_k: value 40 is not allowed; a multiple of group_size \(16\)"),
    (_int(group_size=32, psum_storage={"tile_k": 48}),
     r"int_datapath\.psum_storage\.tile_k: value 48 .* multiple of group_size \(32\)"),
    (_int(group_size=12), r"int_datapath\.group_size: value 12 is not allowed; a power of two"),
    (_int(psum_storage={"codec": {"kind": "float", "exp_bits": 5, "man_bits": 27}}),
     r"int_datapath\.psum_storage\.codec\.man_bits: value 27 is not allowed; .*33 bits must be fewer than the "
     r"32 bits"),
    (_int(acc_bits=20, psum_storage={"codec": {"kind": "trunc", "drop_bits": 20}}),
     r"int_datapath\.psum_storage\.codec\.drop_bits: value 20 is not allowed; an integer from 1 to 19"),
    (_int(psum_storage={"codec": {"kind": "float", "exp_bits": 2, "man_bits": 15}}),
     r"int_datapath\.psum_storage\.codec\.exp_bits: value 2 is not allowed; .*use exp_bits >= 5"),
    (_int(psum_storage={"codec": {"kind": "float", "exp_bits": 5, "man_bits": 15, "bias": 2}}),
     r"int_datapath\.psum_storage\.codec\.bias: value 2 is not allowed; .*bias <= 0"),
    (_int(psum_storage={"codec": {"kind": "zip"}}),
     r"int_datapath\.psum_storage\.codec\.kind: value 'zip' is not allowed; choose one of \['float', 'trunc'\]"),
    (_int(psum_storage={"codec": {"kind": "trunc", "drop_bits": 4, "man_bits": 5}}),
     r"int_datapath\.psum_storage\.codec\.man_bits: value 5 is not allowed with kind 'trunc'"),
    (_int(psum_storage={"codec": {"kind": "float", "exp_bits": 4}}),
     r"int_datapath\.psum_storage\.codec\.man_bits: required for kind 'float'"),
    (_int(psum_storage={"codec": dict(FLOAT_CODEC, rounding="nearest")}),
     r"int_datapath\.psum_storage\.codec\.rounding: value 'nearest' is not allowed with kind 'float'"),
    (_int(psum_storage={"codec": dict(FLOAT_CODEC, colour=1)}),
     r"int_datapath\.psum_storage\.codec\.colour: unknown key; allowed keys are \['bias', 'drop_bits'"),
    (_int(overflow="clip"),
     r"int_datapath\.overflow: value 'clip' is not allowed; choose one of \['saturate', 'wrap'\]"),
    (_int(keep_rounding="up"), r"int_datapath\.keep_rounding: value 'up' is not allowed; choose one of \['truncate'"),
    (_int(psum_bits=40, psum_drop_lsbs=10), r"int_datapath\.psum_drop_lsbs: value 10 is not allowed; psum_bits \+ "
                                            r"psum_drop_lsbs must be at most 48"),
    (_int(acc_bits=64), r"int_datapath\.acc_bits: value 64 is not allowed; an integer from 2 to 48"),
    (_int(scale_codec={"kind": "trunc", "drop_bits": 3}),
     r"int_datapath\.scale_codec\.kind: value 'trunc' is not allowed; scale factors are float32 values"),
    (_int(scale_codec={"kind": "float", "exp_bits": 8, "man_bits": 8}),
     r"int_datapath\.scale_codec: value FloatCodec\(.*\) is not allowed; its values must be float32 values"),
    (_int(foo=1), r"int_datapath\.foo: unknown key; allowed keys are \['a_bits', 'acc_bits'"),
    ({"datapath": "integer"}, r"datapath: value 'integer' is not allowed; choose one of \['native', 'float', 'int'\]"),
    ({"datapath": "float", "int_datapath": {}},
     r"int_datapath: is only allowed with datapath: int \(datapath is 'float'\)"),
    ({"datapath": "int", "float_datapath": {}}, r"float_datapath: is only allowed with datapath: float"),
]


@pytest.mark.parametrize("data, message", INVALID, ids=[m[:40] for _, m in INVALID])
def test_invalid_configs_fail_at_load_naming_key_value_and_allowed(data, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        AcceleratorConfig.from_dict(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=rf"{path}: .*{message}"):
        AcceleratorConfig.from_yaml(path)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"accelerator preset 'int7' is unknown; choose one of \[.*'int8-lot4'"):
        AcceleratorConfig.preset("int7")
