"""cls_attention equals the CLS row of timm's explicit (non-fused) attention map."""

import pytest
import torch
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

from vitaccel.prune import cls_attention


def attention_maps(model: VisionTransformer, x: torch.Tensor) -> list[torch.Tensor]:
    """Every block's softmax attention (B, H, N, N) from timm's non-fused path."""
    maps = []
    for blk in model.blocks:
        blk.attn.fused_attn = False
        blk.attn.attn_drop.register_forward_hook(lambda m, i, o: maps.append(o))
    with torch.no_grad():
        model(x)
    return maps


def expected_scores(attn: torch.Tensor, num_prefix: int) -> torch.Tensor:
    row = attn[:, :, 0].mean(dim=1)[:, num_prefix:]
    return row / row.sum(dim=1, keepdim=True)


@pytest.mark.parametrize("kwargs,num_prefix", [({}, 1), (dict(reg_tokens=3), 4), (dict(qk_norm=True), 1)])
def test_cls_attention_matches_explicit_attention(kwargs, num_prefix):
    torch.manual_seed(0)
    args = dict(img_size=32, patch_size=4, embed_dim=64, depth=3, num_heads=4, **kwargs)
    fused, explicit = VisionTransformer(**args).eval(), VisionTransformer(**args).eval()
    explicit.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, 32, 32)
    maps = attention_maps(explicit, x)
    assert fused.blocks[0].attn.fused_attn  # computed with the fused kernel left on
    with torch.no_grad():
        for block in (0, 1, -1):
            scores = cls_attention(fused, x, block=block)
            assert scores.shape == (2, 64)
            assert torch.allclose(scores, expected_scores(maps[block], num_prefix), atol=1e-6)
            assert torch.allclose(scores.sum(dim=1), torch.ones(2), atol=1e-6)


def test_cls_attention_on_distilled_teacher_and_gradients():
    torch.manual_seed(0)
    teacher = VisionTransformerDistilled(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4)
    x = torch.randn(2, 3, 32, 32)
    scores = cls_attention(teacher, x)  # CLS and distillation token removed
    assert scores.shape == (2, 64)
    scores.square().sum().backward()
    assert teacher.blocks[1].attn.qkv.weight.grad.abs().sum() > 0


def test_cls_attention_bad_block():
    model = VisionTransformer(img_size=32, patch_size=4, embed_dim=64, depth=3, num_heads=4)
    x = torch.randn(1, 3, 32, 32)
    for block in (3, -4, 1.0):
        with pytest.raises(ValueError, match=r"block: value .* \[-3, 2\]"):
            cls_attention(model, x, block=block)
