"""Checkpoints: written atomically, read with ``weights_only=True``, with RNG states for exact resume.

A checkpoint is a plain dict of tensors and Python values (no pickled classes), so it loads with
``torch.load(weights_only=True)``: model and optimizer state, scheduler, grad scaler, epoch,
every process's RNG states, the config and the metrics history.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

FORMAT = "vitaccel-train/1"


class CheckpointError(ValueError):
    """A missing, corrupt or foreign checkpoint; the message names the file."""

    user_error = True


def _fsync_replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # directories cannot be fsynced on some file systems


@contextlib.contextmanager
def _atomic_target(path: str | Path) -> Iterator[str]:
    """Yield a temporary file next to ``path``; on success fsync it and rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        _fsync_replace(Path(tmp), path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_atomic(state: dict, path: str | Path) -> None:
    """Write ``state`` to ``path`` via a temporary file in the same folder, fsync, rename.

    A reader (or a resumed run) sees the old file or the new one, never a partial one.
    """
    with _atomic_target(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def copy_atomic(src: str | Path, dst: str | Path) -> None:
    """Copy a checkpoint file with the same all-or-nothing guarantee as ``save_atomic``."""
    with _atomic_target(dst) as tmp:
        shutil.copyfile(src, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a vitaccel checkpoint safely (``weights_only=True``), with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/garbled files
        detail = str(exc).splitlines()[0] if str(exc) else ""
        detail = f"{type(exc).__name__}: {detail}" if 0 < len(detail) <= 120 else type(exc).__name__
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or not a torch file ({detail})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a vitaccel training checkpoint "
                              f"(expected format {FORMAT!r})")
    return ckpt


def rng_state() -> dict[str, Any]:
    """This process's RNG states (torch CPU and CUDA, NumPy, Python) as weights_only-safe values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
