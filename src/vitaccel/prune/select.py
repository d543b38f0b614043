"""Selection rules: which patch tokens each image keeps, from its token importance scores.

All rules work per image on TIS of shape (B, N) (each row sums to 1) and return a boolean keep
mask of the same shape. CLS and other prefix tokens are never scored, so they are always kept.
Ties are broken towards the lower token index (stable sort), so results do not depend on the
batch an image is in.
"""

from __future__ import annotations

import math

import torch

from vitaccel.prune.config import RULES, value_problem


def topk_count(value: float, n: int) -> int:
    """Patch tokens kept by ``topk(value)`` out of ``n``: ceil(value * n), at least 1.

    ``value * n`` is rounded to 9 decimals first so that e.g. 0.3 * 10 keeps 3, not 4.
    """
    return max(1, math.ceil(round(value * n, 9)))


def keep_mask(tis: torch.Tensor, rule: str, value: float, real: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean (B, N) mask of the patch tokens kept by ``rule`` with parameter ``value``.

    ``real`` (B, N) bool marks each image's scored tokens when rows are padded (a later stage
    after an adaptive one): padding is never kept and ``N`` below is the image's own count.

    - ``topk``: the ``topk_count(value, N)`` highest-TIS tokens (the same count for every image);
    - ``value``: exactly the tokens with ``TIS >= value / N`` (compared in TIS's dtype); may keep
      none when ``value > 1``;
    - ``mass``: the fewest highest-TIS tokens whose TIS sums (in float64) to ``>= value``.
    """
    if rule not in RULES:
        raise ValueError(f"rule: value {rule!r} is not allowed; choose one of {list(RULES)}")
    # checked eagerly (configure, patch and direct calls); under torch.compile the value may be a
    # symbolic float that math.isfinite cannot read, and the config has already checked it
    problem = None if torch.compiler.is_compiling() else value_problem(rule, value)
    if problem:
        raise ValueError(f"value: value {value!r} is not allowed; {problem}")
    if tis.dim() != 2:
        raise ValueError(f"tis: expected shape (B, N_patches), got {tuple(tis.shape)}")
    tis = tis.detach()
    width = tis.shape[1]
    if real is None:
        n = torch.full((tis.shape[0], 1), width, device=tis.device)
    else:
        n = real.sum(dim=1, keepdim=True)
        tis = tis.masked_fill(~real, -1.0)  # below every score: sorted last, never above a threshold
    if rule == "value":
        return tis >= (value / n.double()).to(tis.dtype)
    order = torch.sort(tis, dim=1, descending=True, stable=True).indices
    if rule == "topk" and real is None:
        count = n.clamp(max=topk_count(value, width))
    elif rule == "topk":
        counts = torch.tensor([topk_count(value, k) for k in range(width + 1)], device=tis.device)
        count = counts[n].minimum(n)
    else:
        mass = tis.gather(1, order).clamp_min(0).double().cumsum(dim=1)
        count = ((mass < value).sum(dim=1, keepdim=True) + 1).minimum(n)
    ranked = torch.arange(width, device=tis.device) < count
    return torch.zeros_like(ranked).scatter(1, order, ranked)
