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

from vitaccel.emulate.backend import Backend, resolve_config
from vitaccel.emulate.calibrate import Calibration, calibrate, calibration_of
from vitaccel.emulate.errors import EmulateError
from vitaccel.emulate.evaluate import evaluate
from vitaccel.emulate.options import OP_KINDS, EmulateOptions
from vitaccel.emulate.report import NativeRow, OpRow, Report
from vitaccel.emulate.run import EmulationRun, convert, converted, emulate, restore

__all__ = ["Backend", "Calibration", "EmulateError", "EmulateOptions", "EmulationRun", "NativeRow", "OP_KINDS",
           "OpRow", "Report", "calibrate", "calibration_of", "convert", "converted", "emulate", "evaluate",
           "resolve_config", "restore"]


class _CallableModule(types.ModuleType):
    """Lets ``vitaccel.emulate(model, config)`` work as DESIGN.md writes it."""

    def __call__(self, *args, **kwargs):
        return emulate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
