"""``torch.compile`` of a patched ViT: no graph breaks in dense mode and for ``topk`` (both
placements, several stages), and compiled outputs equal eager ones."""

import pytest
import torch
import torch._dynamo as dynamo
from timm.models.vision_transformer import VisionTransformer

import vitaccel.prune as prune


def vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=4, num_classes=10).eval()


@pytest.mark.parametrize("kwargs", [dict(layer=2), dict(layers=[1, 3], placement="attention")])
@pytest.mark.parametrize("dense", [True, False])
def test_no_graph_breaks_dense_and_topk(kwargs, dense):
    model = prune.patch(vit(), rule="topk", value=0.5, **kwargs)
    model.pruning.configure(dense=dense)
    dynamo.reset()
    with torch.no_grad():
        explained = dynamo.explain(model)(torch.randn(2, 3, 32, 32))
    assert explained.graph_break_count == 0, [str(b.reason) for b in explained.break_reasons]
    assert explained.graph_count == 1


def test_adaptive_rules_break_where_the_count_is_read():
    model = prune.patch(vit(), layer=2, rule="mass", value=0.7)
    dynamo.reset()
    with torch.no_grad():
        assert dynamo.explain(model)(torch.randn(2, 3, 32, 32)).graph_break_count >= 1  # the padded width


@pytest.mark.slow
@pytest.mark.parametrize("dense", [True, False])
def test_compiled_equals_eager(dense):
    model = prune.patch(vit(), layers=[1, 3], rule="topk", value=0.5, placement="attention")
    model.pruning.configure(dense=dense)
    x = torch.randn(3, 3, 32, 32)
    dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        eager = model(x)
        eager_macs = model.pruning.stats["macs"].clone()
        out = compiled(x)
    assert torch.allclose(out, eager, atol=1e-5)
    assert torch.equal(model.pruning.stats["macs"], eager_macs)  # the stats are recorded when compiled too


@pytest.mark.slow
def test_two_topk_values_compile_in_one_process():
    """A second patched model with another topk value recompiles with a symbolic float value;
    the rule check must not read it (it once failed in ``math.isfinite`` under fullgraph)."""
    x = torch.randn(2, 3, 32, 32)
    dynamo.reset()
    for value in (0.5, 0.3):
        model = prune.patch(vit(), layer=2, rule="topk", value=value)
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        with torch.no_grad():
            assert torch.allclose(compiled(x), model(x), atol=1e-5)
