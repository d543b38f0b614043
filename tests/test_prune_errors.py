"""Bad models, layers, rules and values get errors that name the argument and what is allowed."""

import pytest
import torch
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

import vitaccel.prune as prune
from vitaccel.configtools import ConfigError, from_dict
from vitaccel.prune import PruneConfig, keep_mask

SMALL = dict(img_size=32, patch_size=4, embed_dim=32, depth=4, num_heads=2)


@pytest.mark.parametrize("model,match", [
    (torch.nn.Linear(3, 3), r"model: expected a timm VisionTransformer, got Linear"),
    (VisionTransformer(class_token=False, global_pool="avg", **SMALL), r"no class token"),
    (VisionTransformerDistilled(**SMALL), r"distillation token"),
    (VisionTransformer(global_pool="max", **SMALL), r"global_pool 'max' is not supported.*'token', 'avg'"),
    (VisionTransformer(global_pool="map", **SMALL), r"global_pool 'map' is not supported"),
])
def test_unsupported_models(model, match):
    with pytest.raises((TypeError, ValueError), match=match):
        prune.patch(model)
    assert not hasattr(model, "pruning")


@pytest.mark.parametrize("layer", [0, 5, -1, 2.0, True])
def test_layer_out_of_range(layer):
    with pytest.raises(ValueError, match=r"layer: value .* 1 <= layer <= 4"):
        prune.patch(VisionTransformer(**SMALL), layer=layer)


@pytest.mark.parametrize("rule,value,match", [
    ("random", 0.5, r"rule: value 'random' is not allowed; choose one of \['topk', 'value', 'mass'\]"),
    ("topk", 0.0, r"value: value 0.0 is not allowed; rule 'topk' needs 0 < value <= 1"),
    ("topk", 1.5, r"rule 'topk' needs 0 < value <= 1"),
    ("mass", 1.01, r"rule 'mass' needs 0 < value <= 1"),
    ("value", -0.1, r"rule 'value' needs value >= 0"),
    ("mass", float("nan"), r"a finite number is required"),
    ("value", "1", r"a finite number is required"),
])
def test_bad_rule_or_value(rule, value, match):
    model = VisionTransformer(**SMALL)
    with pytest.raises(ConfigError, match=match):
        prune.patch(model, rule=rule, value=value)
    with pytest.raises(ValueError, match=match):
        keep_mask(torch.full((1, 4), 0.25), rule, value)


def test_configure_is_validated_and_atomic():
    model = prune.patch(VisionTransformer(**SMALL), rule="value", value=2.0)
    before = model.pruning.config
    with pytest.raises(ConfigError, match=r"rule 'topk' needs 0 < value <= 1"):
        model.pruning.configure(rule="topk")  # value 2.0 is no keep fraction
    with pytest.raises(ConfigError, match=r"dense: value 1 is not allowed; use True or False"):
        model.pruning.configure(dense=1)
    assert model.pruning.config == before
    model.pruning.configure(rule="topk", value=0.5)
    assert (model.pruning.config.rule, model.pruning.config.value) == ("topk", 0.5)


def test_patch_twice_unpatch_plain_and_masks():
    model = prune.patch(VisionTransformer(**SMALL))
    with pytest.raises(ValueError, match="already pruning-patched"):
        prune.patch(model)
    with pytest.raises(ValueError, match="attn_mask/is_causal: not supported"):
        model(torch.randn(1, 3, 32, 32), attn_mask=torch.ones(1, 1, 65, 65, dtype=torch.bool))
    prune.unpatch(model)
    with pytest.raises(ValueError, match="model: VisionTransformer is not pruning-patched"):
        prune.unpatch(model)


def test_keep_mask_shape_and_config_from_dict():
    with pytest.raises(ValueError, match=r"tis: expected shape \(B, N_patches\), got \(4,\)"):
        keep_mask(torch.full((4,), 0.25), "topk", 0.5)
    assert from_dict(PruneConfig, {"layer": 3, "rule": "topk", "value": 0.7}).layer == 3
    with pytest.raises(ConfigError, match=r"layer: value 0 is not allowed; the pruning layer P is 1-based"):
        from_dict(PruneConfig, {"layer": 0})
    with pytest.raises(ConfigError, match=r"ratio: unknown key"):
        from_dict(PruneConfig, {"ratio": 0.5})
