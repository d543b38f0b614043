"""MACs per image: equal to PyTorch's FLOP counter / 2, to an analytic count, and to each image alone."""

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch.utils.flop_counter import FlopCounterMode

import vitaccel.prune as prune
from vitaccel.measure import count_macs, macs, macs_over

DIM, DEPTH, HEADS, MLP, PATCHES, CLASSES = 64, 6, 4, 128, 64, 10


def small_vit(**kwargs) -> VisionTransformer:
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=4, embed_dim=DIM, depth=DEPTH, num_heads=HEADS,
                              mlp_ratio=MLP / DIM, num_classes=CLASSES, **kwargs).eval()
    with torch.no_grad():
        for blk in model.blocks:  # sharp attention: images keep different token counts
            blk.attn.qkv.weight[:2 * DIM].mul_(10)
    return model


def block(n: int, dim: int = DIM, mlp: int = MLP) -> int:
    """Analytic MACs of one pre-norm ViT block on n tokens: qkv, QK^T, AV, proj, fc1, fc2."""
    return n * dim * 3 * dim + 2 * n * n * dim + n * dim * dim + 2 * n * dim * mlp


def test_deit_small_analytic():
    model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    result = macs(model, torch.randn(1, 3, 224, 224))
    expected = 196 * 384 * 3 * 16 * 16 + 12 * block(197, 384, 1536) + 384 * 1000
    assert result["macs"].tolist() == [expected] == [result["total"]]
    assert abs(expected / 1e9 - 4.6) < 0.01  # the 4.6 GMACs quoted for DeiT-S


def test_dense_equals_flop_counter_with_explicit_attention():
    model = small_vit()
    x = torch.randn(3, 3, 32, 32)
    fused = macs(model, x)
    for blk in model.blocks:
        blk.attn.fused_attn = False  # attention as plain matmuls, which PyTorch's counter knows
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    assert counter.get_total_flops() // 2 == fused["total"] == int(fused["macs"].sum())
    assert fused["macs"].tolist() == [PATCHES * DIM * 48 + DEPTH * block(65) + DIM * CLASSES] * 3
    assert torch.equal(fused["macs"], fused["macs_padded"])


@pytest.mark.parametrize("rule,value,package", [("mass", 0.7, True), ("value", 1.0, False),
                                                ("topk", 0.25, True)])
def test_patched_per_image_equals_alone_and_analytic(rule, value, package):
    model = prune.patch(small_vit(), layer=2, rule=rule, value=value, package=package)
    x = torch.randn(5, 3, 32, 32)
    result = macs(model, x)
    tokens = model.pruning.stats["tokens"]
    assert result["total"] == int(result["macs_padded"].sum())  # the padded work was executed
    for i in range(len(x)):
        assert result["macs"][i] == count_macs(model, x[i:i + 1])  # padding excluded == alone
    fixed = (PATCHES * DIM * 48 + 2 * block(65) + 65 * DIM + DIM * CLASSES
             + (PATCHES * DIM if package else 0))  # + CLS-row scores (+ package sum)
    expected = [fixed + (DEPTH - 2) * block(int(n)) for n in tokens]
    assert result["macs"].tolist() == expected
    width = int(tokens.max())  # executed: linear layers on real tokens, attention padded
    padded = [fixed + (DEPTH - 2) * (block(int(n)) + 2 * (width ** 2 - int(n) ** 2) * DIM) for n in tokens]
    assert result["macs_padded"].tolist() == padded
    if rule != "topk":
        assert (result["macs"] < result["macs_padded"]).any()


def test_patched_dense_costs_only_the_scores():
    model = small_vit()
    x = torch.randn(2, 3, 32, 32)
    dense = macs(model, x)["macs"]
    prune.patch(model, layer=3).pruning.configure(dense=True)
    assert torch.equal(macs(model, x)["macs"], dense + 65 * DIM)


def test_macs_over_and_errors():
    model = prune.patch(small_vit(), layer=2, rule="mass", value=0.7)
    x = torch.randn(6, 3, 32, 32)
    labels = torch.zeros(6)
    summary = macs_over(model, [(x[:4], labels[:4]), (x[4:], labels[4:])])
    assert torch.equal(summary["macs"], macs(model, x)["macs"])
    assert summary["mean"] == pytest.approx(summary["macs"].double().mean().item())
    assert summary["mean_padded"] >= summary["mean"]
    with pytest.raises(ValueError, match="batches: is empty"):
        macs_over(model, [])
    with pytest.raises(ValueError, match=r"x: expected a batch tensor"):
        macs(model, torch.tensor(1.0))
