"""Checkpoints: written atomically, read with ``weights_only=True``, verified by a digest, with RNG
states for exact resume.

A checkpoint is a plain dict of tensors and Python values (no pickled classes), so it loads with
``torch.load(weights_only=True)``: model and optimizer state, scheduler, grad scaler, epoch,
every process's RNG states, the config and the metrics history. Format 2 nests the pruning
settings in ``config["prune"]`` and stores a SHA-256 ``digest`` of everything else, checked on
load; format 1 (flat ``prune_layer``/``rule``/``value``/``package`` keys, no digest) still loads,
mapped to format 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from vitaccel.errors import CheckpointError
from vitaccel.train.config import FORMER_PRUNE_KEYS

FORMAT = "vitaccel-train/2"
_FORMAT_1 = "vitaccel-train/1"


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
        torch.save({"format": FORMAT, **state, "digest": digest(state)}, tmp)


def copy_atomic(src: str | Path, dst: str | Path) -> None:
    """Copy a checkpoint file with the same all-or-nothing guarantee as ``save_atomic``."""
    with _atomic_target(dst) as tmp:
        shutil.copyfile(src, tmp)


def _feed(h: "hashlib._Hash", value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            h.update(repr(key).encode())
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for item in value:
            _feed(h, item)
    else:
        h.update(f"V{value!r}".encode())


def digest(state: dict) -> str:
    """SHA-256 (hex) of every tensor and value in ``state`` except ``format`` and ``digest``."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k not in ("format", "digest")})
    return h.hexdigest()


def _upgrade(ckpt: dict) -> dict:
    """A format-1 checkpoint in format 2: flat pruning keys nested in ``config["prune"]``."""
    config = dict(ckpt.get("config") or {})
    config["prune"] = {new: config.pop(old) for old, new in FORMER_PRUNE_KEYS.items() if old in config}
    config["prune"]["dense"] = False  # format 1 had no such key; training never set it
    ckpt = {**ckpt, "format": FORMAT, "config": config}
    ckpt.pop("prune", None)
    return ckpt


def clean_temporaries(folder: str | Path) -> list[Path]:
    """Delete what a killed checkpoint write left in ``folder`` (``.last.pt.*.tmp`` and the like)."""
    stale = sorted(Path(folder).glob(".*.pt.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a vitaccel checkpoint safely (``weights_only=True``), verify its digest, map format 1 to 2.

    Raises CheckpointError naming the file when it is missing, corrupt or not a vitaccel checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/garbled files
        detail = str(exc).splitlines()[0] if str(exc) else ""
        detail = f"{type(exc).__name__}: {detail}" if 0 < len(detail) <= 120 else type(exc).__name__
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or not a torch file ({detail})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (FORMAT, _FORMAT_1):
        raise CheckpointError(f"checkpoint {str(path)!r} is not a vitaccel training checkpoint "
                              f"(expected format {FORMAT!r} or {_FORMAT_1!r})")
    if ckpt["format"] == _FORMAT_1:
        return _upgrade(ckpt)
    if ckpt.get("digest") != digest(ckpt):
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt: its contents do not match the digest "
                              "stored when it was written")
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
