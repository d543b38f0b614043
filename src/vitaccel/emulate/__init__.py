"""Run any PyTorch model on the emulated accelerator (DESIGN.md section 8).

    import vitaccel.emulate
    with vitaccel.emulate(model, "fp13", exact=False) as run:   # or vitaccel.emulate.emulate(...)
        y = model(x)
    print(run.report())

Every ``nn.Linear``, ``nn.Conv2d`` (im2col), ``F.linear``, ``matmul``/``mm``/``bmm``/``@`` and
``F.scaled_dot_product_attention`` (matmul, float32 softmax, matmul) runs through
``vitaccel.arith.emulated_matmul``; the model's code and weights are not changed.
"""

import sys
import types

from vitaccel.emulate._registry import converted
from vitaccel.emulate.backend import Backend, resolve_config
from vitaccel.emulate.calibration import Calibration, calibrate, calibration_of
from vitaccel.emulate.evaluation import evaluate
from vitaccel.emulate.options import OP_KINDS, EmulateOptions
from vitaccel.emulate.report import NativeRow, OpRow, Report
from vitaccel.emulate.run import EmulationRun, convert, emulate, restore
from vitaccel.errors import EmulateError

__all__ = ["Backend", "Calibration", "EmulateError", "EmulateOptions", "EmulationRun", "NativeRow", "OP_KINDS",
           "OpRow", "Report", "calibrate", "calibration_of", "convert", "converted", "emulate", "evaluate",
           "resolve_config", "restore"]


class _CallableModule(types.ModuleType):
    """Lets ``vitaccel.emulate(model, config)`` work as DESIGN.md writes it."""

    def __call__(self, *args, **kwargs):
        return emulate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
