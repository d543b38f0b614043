"""``emulated_matmul``: one entry point for every datapath, with tiers chosen automatically.

Dispatch only: the tiers live in ``float_tiers`` and ``int_tiers``. Tiers (DESIGN.md section 6),
each reported by ``matmul_tier``:

* ``native``   the host's float32 matmul (``fp32`` preset; nothing is emulated).
* ``fast``     float datapaths with ``exact=False``: operands rounded exactly, one native matmul,
               accumulation in BLAS order; the difference from the golden model is bounded by
               ``fast_error_bound``. Integer datapaths: exact where ``int_tiers.never_overflows``.
* ``tiled``    exact group sums from native matmuls, the datapath's rounding in K order.
* ``faithful`` every product of a group materialised in bounded row chunks (``chunk_bytes``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from vitaccel.arith.bits import is_int
from vitaccel.arith.config import AcceleratorConfig
from vitaccel.arith.float_tiers import float_matmul
from vitaccel.arith.int_tiers import int_matmul, never_overflows
from vitaccel.errors import UserError

# Largest working set of one chunk (bytes); bounds memory whatever the shapes. Near cache size
# the exact tiers run fastest: `bench_float.py --threads 1 --chunk-mib 16` against 64 measured
# tiled 4.9x against 7.4x a float32 matmul, faithful (197 rows) 54x against 67x.
CHUNK_BYTES = 16 * 2 ** 20


class Tier(NamedTuple):
    """How a matmul runs: tier name and whether it is bit-identical to the golden model."""

    name: str
    exact: bool


def _tiers(config: AcceleratorConfig, exact: bool, k: int | None) -> list[Tier]:
    """The tiers that may run ``config``, the automatic choice first."""
    if config.datapath == "native":
        return [Tier("native", False)]
    if config.datapath == "int":
        names = ["fast"] if never_overflows(config.int_datapath, k or 0) else []
        return [Tier(name, True) for name in names + ["tiled", "faithful"]]
    if config.float_datapath.align_bits is not None:
        return [Tier("faithful", True)]
    if config.float_datapath.accumulator != "fp32":  # fast's bound is float32 accumulation's: run exact
        return [Tier("tiled", True)]
    return [Tier("tiled", True) if exact else Tier("fast", False)]


def matmul_tier(config: AcceleratorConfig | str | dict, exact: bool = True, *, k: int | None = None) -> Tier:
    """The tier ``emulated_matmul(..., config, exact)`` uses.

    For integer datapaths the choice can depend on K (the accumulator may overflow only for long
    products): pass the product's ``k``; None gives the tier of products short enough never to
    overflow the accumulator.
    """
    return _tiers(AcceleratorConfig.load(config), exact, k)[0]


def emulated_matmul(a: torch.Tensor, b: torch.Tensor, config: AcceleratorConfig | str | dict, exact: bool = True, *,
                    a_scale: torch.Tensor | None = None, b_scale: torch.Tensor | None = None,
                    tier: str | None = None, chunk_bytes: int = CHUNK_BYTES) -> torch.Tensor:
    """``a @ b`` on the emulated datapath of ``config``, as float32.

    a: (..., M, K), the first operand (activations; the one an integer datapath leading-one
    truncates); b: (K, N) or (..., K, N) with batch dims broadcastable to a's. ``exact=True``
    uses only tiers bit-identical to ``golden.matmul``. ``tier`` forces one of the tiers
    available for the config (integer datapaths: ``tiled``/``faithful`` always, ``fast`` where
    exact); None picks ``matmul_tier(config, exact, k=K)``.

    Integer datapaths: ``a_scale`` is the per-tensor activation scale (0-d, e.g. from
    calibration) or None for ``max|a| / qmax``; with ``int_datapath.activation_scale:
    per_token`` it must be None and each row of a gets ``max|row| / qmax``; ``b_scale`` is per
    output column (shape (N,)) or per tensor (0-d), or None for one scale per column of b (of
    each matrix of a batched b).
    Scales are used as float32. Float datapaths take no scales.

    ``chunk_bytes`` bounds the working set of one row chunk of the exact tiers (at least one row
    a chunk); it changes speed and memory, never the numbers.

    Autograd: float and integer datapaths compute without it (rounding has no useful
    derivative), so their result never requires grad, whatever a and b do; train through them
    with ``vitaccel.emulate(..., grad="ste")``. The native datapath is ``torch.matmul`` itself.
    Autocast does not reach the emulator's own matmuls.
    """
    config = AcceleratorConfig.load(config)
    if not isinstance(exact, bool):
        raise TypeError(f"exact must be a bool (True or False), got {type(exact).__name__} {exact!r}")
    if not is_int(chunk_bytes) or chunk_bytes < 1:
        raise UserError(f"chunk_bytes: value {chunk_bytes!r} is not allowed; a positive integer is required")
    _check_operands(a, b)
    tiers = _tiers(config, exact, a.shape[-1])
    chosen = tiers[0] if tier is None else next((t for t in tiers if t.name == tier), None)
    if chosen is None:
        raise UserError(f"tier: value {tier!r} is not available for config {config.name!r} with exact={exact} "
                         f"and K={a.shape[-1]}; choose one of {[t.name for t in tiers]} or None")
    if config.datapath != "int" and (a_scale is not None or b_scale is not None):
        raise UserError(f"a_scale/b_scale are for integer datapaths; config {config.name!r} is a "
                         f"{config.datapath} datapath")
    with torch.autocast(a.device.type, enabled=False):  # the emulator's own matmuls run as written
        if config.datapath == "native":
            return torch.matmul(a.float(), b.float())
    with torch.autocast(a.device.type, enabled=False), torch.no_grad():
        if config.datapath == "int":
            return int_matmul(a, b, config.int_datapath, chosen.name, a_scale, b_scale, chunk_bytes)
        return float_matmul(a, b, config.float_datapath, chosen.name, chunk_bytes)


def _check_operands(a: torch.Tensor, b: torch.Tensor) -> None:
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.is_complex() or not t.dtype.is_floating_point:
            raise TypeError(f"{name} must be a real floating-point tensor, got dtype {t.dtype}")
        if t.dim() < 2:
            raise UserError(f"{name} must have at least 2 dims (..., rows, cols), got shape {tuple(t.shape)}")
    if a.shape[-1] != b.shape[-2]:
        raise UserError(f"a (..., M, K) and b (..., K, N) disagree on K: a is {tuple(a.shape)}, b is {tuple(b.shape)}")
    try:
        torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError:
        raise UserError(f"the batch dims of a {tuple(a.shape)} and b {tuple(b.shape)} do not broadcast: "
                        f"{tuple(a.shape[:-2])} against {tuple(b.shape[:-2])}; each pair of dims must be equal "
                        "or 1 (or missing)") from None


def fast_error_bound(qa: torch.Tensor, qb: torch.Tensor, group_size: int) -> torch.Tensor:
    """Bound on |fast - golden| for rounded operands qa, qb (the ``exact=False`` contract).

    Both differ from the exact dot product by float32 accumulation error only:
    |fast - exact| <= gamma(K) * sum|a_i b_i| (any BLAS order) and
    |golden - exact| <= gamma(ceil(K/G) + 1) * sum|a_i b_i|, gamma(n) = n u / (1 - n u), u = 2^-24.
    Products are exact in both (FMA or not), so nothing else differs.
    """
    k = qa.shape[-1]
    u = 2.0 ** -24
    gamma = lambda n: n * u / (1 - n * u)  # noqa: E731
    total = gamma(k) + gamma(math.ceil(k / group_size) + 1)
    return total * torch.matmul(qa.double().abs(), qb.double().abs())
