"""Mixed precision: bf16 autocast on CPU or GPU, fp16 autocast with a gradient scaler on GPU."""

from __future__ import annotations

import contextlib

import torch

from vitaccel.configtools import ConfigError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(amp: str, device: torch.device) -> None:
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp: value 'fp16' is not allowed on CPU; use bf16 or none")


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context for ``amp`` ('none', 'bf16', 'fp16') on ``device``."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[amp])


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 (bf16 has float32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")
