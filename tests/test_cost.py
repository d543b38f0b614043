"""Hardware cost estimates: executed shapes, counts, and energy-table validation."""

import pytest
import timm
import torch
import torchvision

from vitaccel.configtools import ConfigError
from vitaccel.measure.hardware import EnergyTable, MatmulShape, cost, matmul_shapes
from vitaccel.measure.mac_count import count_macs


@pytest.mark.parametrize("make", [
    lambda: timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, depth=2),
    lambda: torchvision.models.resnet18(num_classes=10),
])
def test_recorded_shapes_give_the_flop_counter_macs(make):
    model = make().eval()
    x = torch.randn(2, 3, 64, 64)
    shapes = matmul_shapes(model, x)
    assert sum(s.macs for s in shapes) == count_macs(model, x)


def test_counts_follow_the_shapes():
    shapes = [MatmulShape(10, 130, 7, count=3)]
    c = cost(shapes, "fp13")
    assert c.macs == 10 * 130 * 7 * 3 and c.mults == {"8x8": c.macs}
    groups, tiles = 9, 3                                        # ceil(130/16), ceil(130/64)
    assert c.adds["fp32"] == 10 * 7 * 3 * groups
    assert sum(v for k, v in c.adds.items() if k != "fp32") == 10 * 7 * 3 * groups * 15
    assert c.psum_bits_written == 10 * 7 * 3 * tiles * 32 and c.psum_bits_read == 10 * 7 * 3 * (tiles - 1) * 32
    assert c.operand_bits == 3 * (10 * 130 * 13 + 130 * 7 * 13)
    native = cost(shapes, "fp32")
    assert native.energy_pj["multiply"] > 4 * c.energy_pj["multiply"]   # 24x24 vs 8x8 significands
    half = cost(shapes, "fp32").scaled(0.5)
    assert half.macs == native.macs // 2 and half.energy_total_pj == pytest.approx(native.energy_total_pj / 2)


def test_energy_table_is_validated(tmp_path):
    table = EnergyTable.load()
    assert table.int8_mult == 0.2 and "Horowitz" in table.source
    bad = tmp_path / "t.yaml"
    bad.write_text("int8_mult: -1\n")
    with pytest.raises(ConfigError, match="int8_mult: value -1"):
        EnergyTable.load(bad)
    bad.write_text("int8_mul: 1\n")
    with pytest.raises(ConfigError, match="int8_mul: unknown key"):
        EnergyTable.load(bad)
