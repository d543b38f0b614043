"""Every captured op written as matrix products, so that each product can run on the accelerator.

Each function takes a ``product(role, a, b, b_is_weight) -> a @ b`` callback and the op's own
arguments (same names and defaults as ``torch.nn.functional``). ``a`` is the activation (the
operand an integer datapath truncates), ``b`` is ``(K, N)`` or ``(..., K, N)`` with batch dims
broadcastable to ``a``'s; ``role`` names the product inside the op ("" when there is one, "qk"/"av" for
attention). Everything around the products (bias, im2col, softmax, masks) stays float32.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.utils import _pair

Product = Callable[[str, Tensor, Tensor, bool], Tensor]


def matmul(product: Product, a: Tensor, b: Tensor, *, role: str = "", b_is_weight: bool = False) -> Tensor:
    """``torch.matmul`` semantics (1-D operands, broadcast batch dims) on top of ``product``."""
    if a.dim() == 0 or b.dim() == 0:
        raise ValueError(f"matmul: both operands need at least 1 dim, got shapes {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    a_vec, b_vec = a.dim() == 1, b.dim() == 1
    a = a.unsqueeze(0) if a_vec else a
    b = b.unsqueeze(-1) if b_vec else b
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if a.shape[:-2] != batch:
        a = a.expand(*batch, *a.shape[-2:])
    y = product(role, a, b, b_is_weight)
    if b_vec:
        y = y.squeeze(-1)
    if a_vec:
        y = y.squeeze(-1 if b_vec else -2)
    return y


def weight_first_matmul(product: Product, w: Tensor, x: Tensor) -> Tensor:
    """``w @ x`` with a weight on the left, computed as ``(x^T @ w^T)^T`` so ``x`` is the activation."""
    if w.dim() != 2 or x.dim() < 2:
        return matmul(product, w, x)
    return matmul(product, x.transpose(-2, -1), w.t(), b_is_weight=True).transpose(-2, -1)


def linear(product: Product, input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear``: ``input @ weight^T`` (per-output-channel weight) plus bias in float32."""
    y = matmul(product, input, weight.t(), b_is_weight=True)
    return y if bias is None else y + bias


def _same_padding(x: Tensor, kernel: tuple[int, int], dilation: tuple[int, int]) -> Tensor:
    """Pad ``x`` like ``padding='same'`` (extra pixel on the right/bottom for even kernels)."""
    pads = []
    for k, d in zip(reversed(kernel), reversed(dilation)):
        total = d * (k - 1)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def conv2d(product: Product, input: Tensor, weight: Tensor, bias: Tensor | None = None,
           stride: int | tuple = 1, padding: int | tuple | str = 0, dilation: int | tuple = 1,
           groups: int = 1) -> Tensor:
    """``F.conv2d`` as im2col (``F.unfold``) plus one product per group."""
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    stride, dilation = _pair(stride), _pair(dilation)
    kh, kw = weight.shape[-2:]
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"conv2d: padding={padding!r} is not allowed; use 'same', 'valid' or ints")
        if padding == "same":
            x = _same_padding(x, (kh, kw), dilation)
        padding = 0
    padding = _pair(padding)
    n, _, h, w = x.shape
    out_ch, in_per_group = weight.shape[:2]
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # (n, C*kh*kw, L)
    k = in_per_group * kh * kw
    if groups == 1:
        y = product("", cols.transpose(1, 2), weight.reshape(out_ch, k).t(), True)  # (n, L, O)
    else:
        a = cols.view(n, groups, k, ho * wo).transpose(2, 3)                       # (n, G, L, Kg)
        b = weight.reshape(groups, out_ch // groups, k).transpose(1, 2)             # (G, Kg, Og)
        y = product("", a, b, True).transpose(1, 2).reshape(n, ho * wo, out_ch)
    y = y.transpose(1, 2).reshape(n, out_ch, ho, wo)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y.squeeze(0) if unbatched else y


def scaled_dot_product_attention(product: Product, query: Tensor, key: Tensor, value: Tensor,
                                 attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """``F.scaled_dot_product_attention`` as ``softmax(q k^T * scale + mask) v``: two products,
    softmax in float32; rows with every key masked give zeros, as PyTorch's kernels do."""
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: pass attn_mask or is_causal=True, not both")
    if enable_gqa and key.size(-3) != query.size(-3):
        repeat = query.size(-3) // key.size(-3)
        key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
    scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    scores = matmul(product, query, key.transpose(-2, -1), role="qk") * scale
    if is_causal:
        attn_mask = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool, device=query.device).tril()
    if attn_mask is not None:
        scores = (scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                  else scores + attn_mask)
    attn = torch.softmax(scores.float(), dim=-1)
    if attn_mask is not None:
        attn = attn.masked_fill(scores.eq(float("-inf")).all(-1, keepdim=True), 0.0)
    if dropout_p > 0.0:
        attn = F.dropout(attn, dropout_p)
    return matmul(product, attn, value, role="av")
