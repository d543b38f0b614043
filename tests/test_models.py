"""vitaccel.models: the small timm-registered ViTs and create_model."""

import pytest
import timm
import torch

from vitaccel.configtools import ConfigError
from vitaccel.models import SMALL_VITS, create_model


@pytest.mark.parametrize("name", sorted(SMALL_VITS))
def test_small_vits_are_timm_models(name):
    assert timm.is_model(name)
    model = create_model(name, num_classes=7)
    assert model.pretrained_cfg["architecture"] == name
    assert tuple(model.patch_embed.grid_size) == (8, 8)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_create_model_overrides_architecture():
    model = create_model("vit_nano_patch4_32", img_size=64, depth=3, num_classes=3)
    assert tuple(model.patch_embed.grid_size) == (16, 16)
    assert len(model.blocks) == 3
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_create_model_accepts_any_timm_name():
    model = create_model("vit_tiny_patch16_224", img_size=32, num_classes=4)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 4)


def test_create_model_unknown_name_is_a_clear_error():
    with pytest.raises(ConfigError, match="model: 'vit_nanoo_patch4_32' is not a timm model name"):
        create_model("vit_nanoo_patch4_32")


def test_small_vits_start_from_a_sincos_position_table():
    from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
    model = create_model("vit_pico_patch4_32", img_size=16)
    table = build_sincos2d_pos_embed([4, 4], 32)
    assert torch.equal(model.pos_embed[0, 1:].detach(), table)
    assert model.pos_embed.requires_grad  # still learned
