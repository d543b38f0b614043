"""The emulator's two registries, kept apart so that calibration and runs need not import each other.

``RUNS`` maps each converted model to its ``EmulationRun``; ``CALIBRATIONS`` maps a model to the
``Calibration`` that ``calibrate`` last computed for it. Both hold models weakly.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch.nn as nn

RUNS: weakref.WeakKeyDictionary[nn.Module, Any] = weakref.WeakKeyDictionary()
CALIBRATIONS: weakref.WeakKeyDictionary[nn.Module, Any] = weakref.WeakKeyDictionary()


def converted(model: nn.Module) -> bool:
    """Whether ``model`` is currently converted to run emulated."""
    return model in RUNS
