"""What several commands share: config keys, the output-folder claim, the model/data fit check,
JSON results and progress bars only on a terminal. Imports nothing heavy at module level."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitaccel.configtools import check_writable, field
from vitaccel.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch.nn as nn

    from vitaccel.data import DataBundle

MARKER = ".vitaccel-output"  # in every folder a command writes: which command wrote it


def device_field(auto: str = "CUDA when available") -> Any:
    """The ``device`` key, the same in every command; ``auto`` says what auto means there."""
    return field("auto", choices=("auto", "cpu", "cuda"), help=f"auto: {auto}; cuda without CUDA is an error")


# vitaccel.emulate.calibration.METHODS, spelled here so that the CLI's help needs no torch (a test keeps them equal)
CALIB_METHODS = ("max", "percentile", "mse")


def _alpha(v: float) -> str | None:
    return None if 0.0 <= v <= 1.0 else "a SmoothQuant alpha in [0, 1] is required (or null for no migration)"


def _op_kinds(v: list[str]) -> str | None:
    from vitaccel.emulate.options import OP_KINDS

    unknown = [k for k in v if k not in OP_KINDS]
    return f"unknown op kinds {unknown}; choose from {list(OP_KINDS)}" if unknown else None


def calib_method_field() -> Any:
    """The ``calib_method`` key of the commands that emulate integer datapaths."""
    return field("max", choices=CALIB_METHODS, help="activation range per product (per_tensor integer datapaths), "
                                                    "measured on calibration data held apart from the evaluated data")


def smooth_field() -> Any:
    """The ``smooth`` key of the commands that emulate integer datapaths."""
    return field(None, check=_alpha, help="SmoothQuant migration strength in [0, 1] for products with weights "
                                          "(integer datapaths)")


def ops_field() -> Any:
    """The ``ops`` key of the commands that emulate: which op kinds run on the accelerator."""
    return field(default_factory=list, check=_op_kinds, help="op kinds that run emulated (default: all of "
                                                             "linear,conv2d,matmul,attention; e.g. linear: linear "
                                                             "layers only)")


def json_field() -> Any:
    """The ``json`` key, the same in every command."""
    return field(None, help="also write the results as JSON to this file")


def progress() -> bool:
    """Progress bars only on a terminal; logs get plain lines."""
    return sys.stderr.isatty()


def claim_out(path: str | Path, command: str, force: bool, key: str = "--out") -> Path:
    """Check, before long work, that ``command`` may write into folder ``path``, then create it and
    mark it as ``command``'s. A non-empty folder that another command (or no vitaccel command) wrote
    is refused unless ``force``; ConfigError naming ``key`` otherwise."""
    path = check_writable(path, key)
    marker = path / MARKER
    if path.is_dir() and any(path.iterdir()) and not force:
        owner = marker.read_text().strip() if marker.is_file() else None
        if owner != command:
            what = f"the output of vitaccel {owner}" if owner else "files vitaccel did not write"
            raise ConfigError(f"{key}: folder {str(path)!r} holds {what}; choose another folder, or add --force "
                              f"to overwrite it")
    path.mkdir(parents=True, exist_ok=True)
    marker.write_text(command + "\n")
    return path


def check_fits(model: nn.Module, bundle: DataBundle, key: str) -> None:
    """A data set must fit the model it is run on: classes, channels and image size; DataError naming
    ``key`` otherwise (a 10-class model on 6-class data would report chance accuracy in silence)."""
    classes = getattr(model, "num_classes", None)
    if classes is not None and classes != bundle.num_classes:
        raise DataError(f"{key}: the data has {bundle.num_classes} classes but the model predicts {classes}; "
                        "give data the model was trained for")
    image = bundle.val[0][0]
    embed = getattr(model, "patch_embed", None)
    chans = getattr(getattr(embed, "proj", None), "in_channels", None)
    size = tuple(getattr(embed, "img_size", None) or ())
    if chans is not None and image.shape[0] != chans:
        raise DataError(f"{key}: the data has {image.shape[0]} channels but the model takes {chans}")
    if size and tuple(image.shape[1:]) != size:
        raise DataError(f"{key}: the data has {tuple(image.shape[1:])} px images but the model takes {size}")


def write_json(path: str | Path, results: Any) -> Path:
    """Write ``results`` as JSON to ``path`` (folders created) and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return path
