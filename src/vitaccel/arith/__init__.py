"""Number formats and accelerator datapaths, bit-exact against a scalar golden model.

Knows nothing of models: tensors in, tensors out.
"""

from vitaccel.arith.config import AcceleratorConfig, FloatDatapath
from vitaccel.arith.formats import FP13, FloatFormat
from vitaccel.arith.matmul import Tier, emulated_matmul, fast_error_bound, matmul_tier

__all__ = ["FP13", "AcceleratorConfig", "FloatDatapath", "FloatFormat", "Tier", "emulated_matmul",
           "fast_error_bound", "matmul_tier"]
