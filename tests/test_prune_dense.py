"""Patched ViTs in dense mode equal timm's own model; unpatch restores it; training works."""

import copy
import io

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

import vitaccel.prune as prune


def small_vit(**kwargs) -> VisionTransformer:
    """img 32, patch 4 (64 patches), depth 6, dim 64, 4 heads, random weights."""
    args = dict(img_size=32, patch_size=4, embed_dim=64, depth=6, num_heads=4, num_classes=10)
    return VisionTransformer(**{**args, **kwargs})


@pytest.mark.parametrize("name,batch,size", [
    ("deit_tiny_patch16_224", 2, 224),
    ("deit_small_patch16_224", 1, 224),
    ("small", 3, 32),
])
def test_dense_equals_unpatched(name, batch, size):
    torch.manual_seed(0)
    model = small_vit() if name == "small" else timm.create_model(name, pretrained=False)
    model.eval()
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        reference = model(x)
        prune.patch(model, layer=4, rule="topk", value=0.5)
        pruned = model(x)
        model.pruning.configure(dense=True)
        dense = model(x)
    assert (dense - reference).abs().max().item() <= 1e-5
    n = model.patch_embed.num_patches
    assert model.pruning.stats["tokens"].tolist() == [n + 1] * batch
    assert model.pruning.keep.all()
    assert not torch.allclose(pruned, reference, atol=1e-4)  # the sparse run really pruned


def test_keep_all_equals_dense():
    # topk 1.0 keeps every patch in its original order and adds no package token
    torch.manual_seed(0)
    model = small_vit().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        out = prune.patch(model, layer=2, rule="topk", value=1.0)(x)
    assert (out - reference).abs().max().item() <= 1e-6
    assert model.pruning.stats["tokens"].tolist() == [65, 65]


@pytest.mark.parametrize("kwargs", [dict(global_pool="avg"), dict(reg_tokens=2), dict(no_embed_class=True)])
def test_dense_equals_unpatched_variants(kwargs):
    torch.manual_seed(0)
    model = small_vit(**kwargs).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        prune.patch(model, layer=3).pruning.configure(dense=True)
        assert (model(x) - reference).abs().max().item() <= 1e-6


def test_unpatch_restores_exactly():
    torch.manual_seed(0)
    model = small_vit().eval()
    x = torch.randn(2, 3, 32, 32)
    state = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        reference = model(x)
        prune.patch(model, layer=2, rule="mass", value=0.5)
        assert list(model.state_dict()) == list(state)  # nothing added to the checkpoint
        model(x)
        assert prune.unpatch(model) is model
        out = model(x)
    assert type(model) is VisionTransformer
    assert not hasattr(model, "pruning")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(out, reference)
    prune.patch(model, layer=5)  # can be patched again
    assert model.pruning.config.layer == 5


def test_training_graph_copy_and_pickle():
    torch.manual_seed(0)
    model = prune.patch(small_vit(), layer=2, rule="topk", value=0.5).train()
    x = torch.randn(3, 3, 32, 32)
    target = torch.full((3, 64), 1 / 64)
    for dense in (True, False):
        model.zero_grad()
        model.pruning.configure(dense=dense)
        logits = model(x)
        tis = model.pruning.tis
        assert tis.shape == (3, 64) and tis.requires_grad
        kl = torch.nn.functional.kl_div(tis.log(), target, reduction="batchmean")
        (logits.logsumexp(-1).mean() + kl).backward()
        assert model.blocks[1].attn.qkv.weight.grad.abs().sum() > 0
        assert model.blocks[-1].mlp.fc2.weight.grad.abs().sum() > 0
    twin = copy.deepcopy(model)  # e.g. an EMA copy, taken after a forward that holds a graph
    assert twin.pruning.config == model.pruning.config and twin.pruning.tis is None
    assert twin is not model and type(twin) is type(model)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False).eval()
    assert type(loaded) is type(model) and loaded.pruning.config == model.pruning.config
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_grad_checkpointing_same_output():
    torch.manual_seed(0)
    model = prune.patch(small_vit(), layer=2, rule="value", value=1.0).train()
    x = torch.randn(3, 3, 32, 32)
    plain = model(x)
    assert model.pruning.valid is not None  # padded batch: masked attention, real-row layers
    model.set_grad_checkpointing(True)
    checkpointed = model(x)
    checkpointed.sum().backward()
    assert (plain - checkpointed).abs().max().item() <= 1e-6
    assert model.blocks[-1].attn.qkv.weight.grad is not None
