"""The op decompositions (vitaccel.emulate.ops) reproduce torch's ops when products are exact."""

import pytest
import torch
import torch.nn.functional as F

from vitaccel.emulate import ops


def product(role, a, b, b_is_weight):
    """An exact-enough product (float64), so any mismatch is the decomposition's fault."""
    return torch.matmul(a.double(), b.double()).float()


def close(x, y):
    assert x.shape == y.shape
    torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("a_shape,b_shape", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (4, 5)),
                                             ((3, 4), (4,)), ((4,), (4,)), ((2, 1, 3, 4), (5, 4, 2)),
                                             ((3, 4), (2, 4, 5))])
def test_matmul_follows_torch_matmul_semantics(a_shape, b_shape):
    a, b = torch.randn(a_shape), torch.randn(b_shape)
    close(ops.matmul(product, a, b), torch.matmul(a, b))


def test_weight_first_matmul_makes_the_activation_the_first_operand():
    w, x = torch.randn(5, 4), torch.randn(2, 4, 3)
    seen = []

    def spy(role, a, b, b_is_weight):
        seen.append((a.shape, b_is_weight))
        return product(role, a, b, b_is_weight)
    close(ops.weight_first_matmul(spy, w, x), w @ x)
    assert seen == [(torch.Size([2, 3, 4]), True)]


@pytest.mark.parametrize("shape", [(4,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(shape, bias):
    x, w, b = torch.randn(shape), torch.randn(6, 4), torch.randn(6) if bias else None
    close(ops.linear(product, x, w, b), F.linear(x, w, b))


@pytest.mark.parametrize("kw", [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(2, 1), padding=(0, 2), dilation=(1, 2)),
    dict(groups=2, padding=1),
    dict(groups=6, padding=1),  # depthwise
    dict(padding="same", dilation=2),
    dict(padding="valid", stride=3),
])
@pytest.mark.parametrize("kernel", [(3, 3), (2, 4)])
def test_conv2d(kw, kernel):
    groups = kw.get("groups", 1)
    x = torch.randn(2, 6, 9, 10)
    w, b = torch.randn(12, 6 // groups, *kernel), torch.randn(12)
    if kw.get("padding") == "same" and kw.get("stride", 1) != 1:
        pytest.skip("torch forbids padding='same' with stride")
    close(ops.conv2d(product, x, w, b, **kw), F.conv2d(x, w, b, **kw))


def test_conv2d_unbatched_and_without_bias():
    x, w = torch.randn(3, 8, 8), torch.randn(4, 3, 3, 3)
    close(ops.conv2d(product, x, w, None, 1, 1), F.conv2d(x, w, None, 1, 1))


def test_conv2d_rejects_unknown_padding_string():
    with pytest.raises(ValueError, match="padding='full'"):
        ops.conv2d(product, torch.randn(1, 1, 4, 4), torch.randn(1, 1, 3, 3), padding="full")


def _qkv(heads=2, kv_heads=2, length=5, source=7, dim=8):
    return (torch.randn(2, heads, length, dim), torch.randn(2, kv_heads, source, dim),
            torch.randn(2, kv_heads, source, dim))


@pytest.mark.parametrize("kw", [dict(), dict(scale=0.3), dict(is_causal=True)])
def test_sdpa(kw):
    q, k, v = _qkv(source=5)
    close(ops.scaled_dot_product_attention(product, q, k, v, **kw), F.scaled_dot_product_attention(q, k, v, **kw))


def test_sdpa_bool_mask_with_fully_masked_rows_gives_zeros_like_torch():
    q, k, v = _qkv()
    mask = torch.rand(5, 7) > 0.4
    mask[2] = False
    out = ops.scaled_dot_product_attention(product, q, k, v, mask)
    close(out, F.scaled_dot_product_attention(q, k, v, mask))
    assert torch.equal(out[:, :, 2], torch.zeros_like(out[:, :, 2]))


def test_sdpa_float_mask_broadcast_over_heads():
    q, k, v = _qkv()
    mask = torch.randn(2, 1, 5, 7)
    mask[1, 0, :, 3:] = float("-inf")
    close(ops.scaled_dot_product_attention(product, q, k, v, mask),
          F.scaled_dot_product_attention(q, k, v, mask))


def test_sdpa_grouped_query_attention():
    q, k, v = _qkv(heads=4, kv_heads=2)
    close(ops.scaled_dot_product_attention(product, q, k, v, enable_gqa=True),
          F.scaled_dot_product_attention(q, k, v, enable_gqa=True))


def test_sdpa_products_are_named_and_dropout_applies_only_when_asked():
    q, k, v = _qkv()
    roles = []

    def spy(role, a, b, b_is_weight):
        roles.append((role, b_is_weight))
        return product(role, a, b, b_is_weight)
    out0 = ops.scaled_dot_product_attention(spy, q, k, v, dropout_p=0.0)
    assert roles == [("qk", False), ("av", False)]
    torch.manual_seed(0)
    out1 = ops.scaled_dot_product_attention(product, q, k, v, dropout_p=0.5)
    assert not torch.allclose(out0, out1)


def test_sdpa_rejects_mask_and_causal_together():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="not both"):
        ops.scaled_dot_product_attention(product, q, k, v, torch.ones(5, 7, dtype=torch.bool), is_causal=True)
