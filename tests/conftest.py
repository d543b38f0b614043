"""Shared test helpers."""

import torch


def same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Bit-exact equality of float tensors (NaN equals NaN; -0 differs from +0)."""
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    idt = {torch.float32: torch.int32, torch.float64: torch.int64, torch.float16: torch.int16,
           torch.bfloat16: torch.int16}[x.dtype]
    eq = (x.view(idt) == y.view(idt)) | (torch.isnan(x) & torch.isnan(y))
    return bool(eq.all())


def random_float32(n: int, seed: int = 0) -> torch.Tensor:
    """Float32 values spread over every binade, plus every special and boundary value."""
    g = torch.Generator().manual_seed(seed)
    bits = torch.randint(-2 ** 31, 2 ** 31, (n,), generator=g, dtype=torch.int64).to(torch.int32)
    specials = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1.0, -1.0,
                             torch.finfo(torch.float32).max, -torch.finfo(torch.float32).max,
                             torch.finfo(torch.float32).tiny, torch.finfo(torch.float32).smallest_normal / 2 ** 23,
                             65280.0, 65504.0, 65519.99, 65520.0, 65408.0, 65407.99, 448.0, 464.0, 57344.0,
                             2.0 ** -14, 2.0 ** -21, 2.0 ** -22, 2.0 ** -24, 2.0 ** -25, 2.0 ** -133, 2.0 ** -134,
                             3.3895313892515355e38, 3.4e38])
    return torch.cat([bits.view(torch.float32), specials, -specials])
