"""Selection rule semantics, CLS always kept, and the package token's definition."""

import copy
import math

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

import vitaccel.prune as prune
from vitaccel.prune import keep_mask, topk_count


def random_tis(batch: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(batch, n, generator=g)).softmax(dim=-1)


@pytest.mark.parametrize("value,n,count", [(0.5, 196, 98), (0.3, 196, 59), (0.3, 10, 3),
                                           (0.7, 10, 7), (0.01, 10, 1), (1.0, 64, 64)])
def test_topk_count(value, n, count):
    assert topk_count(value, n) == count


def test_topk_keeps_the_highest():
    tis = random_tis(4, 50)
    keep = keep_mask(tis, "topk", 0.3)
    assert keep.sum(dim=1).tolist() == [15] * 4
    for row, kept in zip(tis, keep):
        assert row[kept].min() >= row[~kept].max()


def test_topk_ties_break_to_lower_index():
    tis = torch.full((1, 8), 1 / 8)
    assert keep_mask(tis, "topk", 0.25).nonzero()[:, 1].tolist() == [0, 1]


def test_value_keeps_exactly_the_tokens_above_threshold():
    tis = torch.tensor([[0.25, 0.25, 0.3, 0.2], [0.1, 0.1, 0.1, 0.7]])
    assert keep_mask(tis, "value", 1.0).tolist() == [[True, True, True, False], [False, False, False, True]]
    assert keep_mask(tis, "value", 0.0).all()
    assert not keep_mask(tis, "value", 3.5).any()  # threshold above every TIS: none kept
    tis = random_tis(8, 64)
    for theta in (0.5, 1.0, 2.0):
        assert torch.equal(keep_mask(tis, "value", theta), tis >= theta / 64)


@pytest.mark.parametrize("mass", [0.1, 0.5, 0.9, 0.99, 1.0])
def test_mass_keeps_the_fewest_reaching_the_mass(mass):
    tis = random_tis(16, 64, seed=1)
    keep = keep_mask(tis, "mass", mass)
    for row, kept in zip(tis.double(), keep):
        count = int(kept.sum())
        top = row.sort(descending=True).values
        if count < 64:
            assert row[kept].min() >= row[~kept].max()
            assert top[:count].sum() >= mass
        assert count == 1 or top[:count - 1].sum() < mass  # one fewer does not reach it
    if 0.5 <= mass < 1:
        assert keep.sum(dim=1).unique().numel() > 1  # adaptive: per-image counts


def test_cls_kept_and_package_is_tis_weighted_mean():
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=4).eval()
    native = copy.deepcopy(model)  # block 2's output, unpatched (the patched model runs it in two parts)
    prune.patch(model, layer=2, rule="value", value=1.0, package=True)
    seen = {}
    model.blocks[2].register_forward_pre_hook(lambda m, i: seen.update(after=i[0]))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        model(x)
        before = native.blocks[:2](native.norm_pre(native.patch_drop(native._pos_embed(native.patch_embed(x)))))
    after = seen["after"]
    tis, keep, tokens = model.pruning.tis, model.pruning.keep, model.pruning.stats["tokens"]
    for i in range(3):
        kept = int(keep[i].sum())
        assert torch.equal(after[i, 0], before[i, 0])  # CLS first, untouched
        assert torch.equal(after[i, 1:1 + kept], before[i, 1:][keep[i]])  # kept, original order
        w = tis[i][~keep[i]]
        package = (w[:, None] * before[i, 1:][~keep[i]]).sum(0) / w.sum()
        assert torch.allclose(after[i, 1 + kept], package, atol=1e-6)
        assert tokens[i] == kept + 2
        assert after[i, tokens[i]:].abs().sum() == 0  # padding is zeros


@pytest.mark.parametrize("package,tokens", [(True, 2), (False, 1)])
def test_nothing_kept_still_runs(package, tokens):
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=4).eval()
    prune.patch(model, layer=2, rule="value", value=64.0, package=package)  # above every TIS
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert torch.isfinite(out).all()
    assert model.pruning.stats["tokens"].tolist() == [tokens] * 2
    assert not model.pruning.keep.any()


def test_tis_is_normalised_cls_attention():
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=4).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = prune.cls_attention(model, x, block=2)
        prune.patch(model, layer=3, rule="mass", value=0.5)(x)
    tis = model.pruning.tis
    assert torch.allclose(tis, expected, atol=1e-6)
    assert torch.allclose(tis.sum(dim=1), torch.ones(2), atol=1e-6)
    assert math.isclose(model.pruning.stats["kept"].float().mean().item(),
                        model.pruning.keep.sum(dim=1).float().mean().item())
