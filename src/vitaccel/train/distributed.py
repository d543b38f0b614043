"""Process-group setup for ``torchrun`` (gloo on CPU, NCCL on GPU) and cross-rank reductions.

A plain ``python -m vitaccel train`` is a world of one; the same code runs under
``torchrun --nproc_per_node=N`` because everything goes through ``Dist``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from vitaccel.configtools import ConfigError


@dataclass
class Dist:
    """Where this process sits: rank, world size, and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def sum(self, values: torch.Tensor | list[float]) -> list[float]:
        """Sum numbers over all ranks (float64, so counts and sums stay exact)."""
        t = torch.as_tensor(values, dtype=torch.float64).to(self.device)
        if self.active:
            dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def shard(self, n: int) -> list[int]:
        """This rank's share of ``range(n)`` without padding, so reduced metrics count each item once."""
        return list(range(self.rank, n, self.world_size))


LOCAL = Dist(0, 1, torch.device("cpu"))  # a world of one on the CPU (the default outside training)


def use_cuda(device: str, key: str = "device") -> bool:
    """Whether ``device`` ('auto', 'cpu' or 'cuda') means CUDA here; 'cuda' without CUDA is an error
    naming ``key``."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}: value 'cuda' is not allowed; no CUDA device is available (use cpu or auto)")
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def setup(device: str = "auto") -> Dist:
    """Join the ``torchrun`` process group if there is one, and pick this process's device."""
    cuda = use_cuda(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world, torch.device("cuda", local_rank) if cuda else torch.device("cpu"))


def teardown(d: Dist) -> None:
    """Leave the process group ``setup`` joined, if any."""
    if d.active and dist.is_initialized():
        dist.destroy_process_group()
