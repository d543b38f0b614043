"""What computes a captured product: ``vitaccel.arith.emulated_matmul`` for one accelerator config.

``Backend`` is also the extension point for datapaths that are not in ``vitaccel.arith`` yet:
build one with your own ``matmul`` function and pass it wherever a config is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import Tensor

from vitaccel.errors import EmulateError

DATAPATHS = ("native", "float", "int")


def resolve_config(spec: Any) -> Any:
    """An ``AcceleratorConfig`` from a config, a preset name or a YAML file path.

    Raises ``ConfigError`` for a file that does not validate and TypeError for other types.
    """
    from vitaccel.arith import AcceleratorConfig

    if not isinstance(spec, (AcceleratorConfig, str, Path)):
        raise TypeError(f"config: expected an AcceleratorConfig, a preset name or a YAML file path, "
                        f"got {type(spec).__name__}")
    return AcceleratorConfig.load(spec)


def _custom_tier(k: int) -> tuple[str, bool]:
    return "custom", False


@dataclass(frozen=True)
class Backend:
    """A datapath as the emulator sees it.

    ``matmul(a, b, a_scale=..., b_scale=...)`` returns the float32 product of the datapath
    (``a`` the activation, ``b`` (K, N) or batched); ``tier(K)`` says which implementation runs a
    product of length K and whether it is bit-identical to the golden model, as ``(name, exact)``;
    ``qmax`` is the largest activation integer of an integer datapath (a calibrated scale is
    ``range / qmax``); ``activation_scale`` says whether it takes calibrated per-tensor
    activation scales ("per_tensor") or scales each row itself ("per_token").
    """

    name: str
    datapath: str
    matmul: Callable[..., Tensor]
    tier: Callable[[int], tuple[str, bool]] = _custom_tier
    qmax: int | None = None
    activation_scale: str = "per_tensor"

    def __post_init__(self) -> None:
        if self.datapath not in DATAPATHS:
            raise EmulateError(f"datapath: {self.datapath!r} is not allowed; choose one of {list(DATAPATHS)}")
        if self.datapath == "int" and not (isinstance(self.qmax, int) and self.qmax > 0):
            raise EmulateError(f"qmax: {self.qmax!r} is not allowed; an int datapath needs a positive int")
        from vitaccel.arith.config import ACTIVATION_SCALES

        if self.activation_scale not in ACTIVATION_SCALES:
            raise EmulateError(f"activation_scale: {self.activation_scale!r} is not allowed; choose one of "
                               f"{list(ACTIVATION_SCALES)}")

    @classmethod
    def from_config(cls, config: Any, exact: bool = True) -> "Backend":
        """The backend of an ``AcceleratorConfig`` (or preset name, or YAML path)."""
        from vitaccel.arith import emulated_matmul, matmul_tier
        from vitaccel.arith.intpath import qmax

        config = resolve_config(config)

        def matmul(a: Tensor, b: Tensor, *, a_scale: Tensor | None = None,
                   b_scale: Tensor | None = None) -> Tensor:
            return emulated_matmul(a, b, config, exact, a_scale=a_scale, b_scale=b_scale)

        def tier(k: int) -> tuple[str, bool]:
            return tuple(matmul_tier(config, exact, k=k))

        dp = config.int_datapath
        a_qmax = qmax(dp.a_bits) if dp is not None else None
        return cls(config.name, config.datapath, matmul, tier, a_qmax,
                   dp.activation_scale if dp is not None else "per_tensor")
