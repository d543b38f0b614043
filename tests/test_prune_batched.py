"""A batch with per-image token counts gives each image exactly what it gets alone."""

import itertools

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

import vitaccel.prune as prune


def peaked_vit(**kwargs) -> VisionTransformer:
    """Small random ViT whose attention is sharp enough that images keep different counts."""
    torch.manual_seed(0)
    args = dict(img_size=32, patch_size=4, embed_dim=64, depth=6, num_heads=4, num_classes=10)
    model = VisionTransformer(**{**args, **kwargs}).eval()
    with torch.no_grad():
        for blk in model.blocks:  # scale q and k: sharper attention logits
            blk.attn.qkv.weight[:2 * model.embed_dim].mul_(10)
    return model


RULES = [("topk", 0.3), ("value", 1.0), ("mass", 0.7)]


@pytest.mark.parametrize("pool", ["token", "avg"])
def test_batched_equals_alone(pool):
    model = prune.patch(peaked_vit(global_pool=pool), layer=2)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        for (rule, value), package in itertools.product(RULES, (True, False)):
            model.pruning.configure(rule=rule, value=value, package=package)
            batched = model(x)
            stats = model.pruning.stats
            padded = model.pruning.valid is not None
            singles = torch.cat([model(x[i:i + 1]) for i in range(len(x))])
            last = model.pruning.stats  # the last image, run alone
            assert (batched - singles).abs().max().item() <= 1e-5, (rule, package)
            if rule == "topk":
                assert not padded and torch.equal(stats["macs"], stats["macs_padded"])
            else:  # counts differ between images: the padded path was exercised
                assert padded and stats["tokens"].unique().numel() > 1, (rule, package)
                assert (stats["macs"] < stats["macs_padded"]).any()
            assert stats["tokens"][-1] == last["tokens"][0]
            assert stats["macs"][-1] == last["macs"][0]


def test_stats_per_image_match_alone():
    model = prune.patch(peaked_vit(), layer=3, rule="mass", value=0.6)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        model(x)
        batch_stats = {k: v.clone() for k, v in model.pruning.stats.items()}
        batch_keep = model.pruning.keep.clone()
        for i in range(len(x)):
            model(x[i:i + 1])
            for key in ("tokens", "kept", "macs"):
                assert batch_stats[key][i] == model.pruning.stats[key][0], key
            assert torch.equal(batch_keep[i], model.pruning.keep[0])
    expected = batch_stats["kept"] + 1 + (batch_stats["kept"] < 64)  # CLS + kept + package
    assert torch.equal(batch_stats["tokens"], expected)


def test_registers_batched_equals_alone():
    model = prune.patch(peaked_vit(reg_tokens=2), layer=2, rule="value", value=1.0)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        batched = model(x)
        tokens = model.pruning.stats["tokens"]
        kept = model.pruning.stats["kept"]
        singles = torch.cat([model(x[i:i + 1]) for i in range(len(x))])
    assert (batched - singles).abs().max().item() <= 1e-5
    assert torch.equal(tokens, kept + 3 + (kept < 64))  # CLS + 2 registers always kept


@pytest.mark.parametrize("rule, value", [("mass", 0.6), ("topk", 0.5), ("value", 1.0)])
@pytest.mark.parametrize("package", [True, False])
def test_an_empty_batch_gives_an_empty_output_like_the_unpatched_model(rule, value, package):
    native = peaked_vit().eval()
    expected = native(torch.randn(0, 3, 32, 32)).shape
    model = prune.patch(native, layer=2, rule=rule, value=value, package=package)
    out = model(torch.randn(0, 3, 32, 32))
    assert out.shape == expected == (0, native.num_classes)
    assert {k: tuple(v.shape) for k, v in model.pruning.stats.items()} == {k: (0,) for k in model.pruning.stats}
