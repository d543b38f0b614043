"""Number formats and accelerator datapaths, bit-exact against a scalar golden model.

Knows nothing of models: tensors in, tensors out.
"""

from vitaccel.arith.config import AcceleratorConfig, CodecSpec, FloatDatapath, IntDatapath, PsumStorage
from vitaccel.arith.dispatch import quantize
from vitaccel.arith.formats import FP13, FloatFormat, p3109
from vitaccel.arith.intpath import dequantize_int, leading_one_truncate, quantize_int
from vitaccel.arith.matmul import Tier, emulated_matmul, fast_error_bound, matmul_tier
from vitaccel.arith.mx import MXFormat
from vitaccel.arith.psum import FloatCodec, TruncCodec
from vitaccel.arith.stats import MultiplierErrorStats, error_stats

__all__ = ["FP13", "AcceleratorConfig", "CodecSpec", "FloatCodec", "FloatDatapath", "FloatFormat",
           "IntDatapath", "MXFormat", "PsumStorage", "Tier", "TruncCodec", "dequantize_int", "emulated_matmul",
           "error_stats", "fast_error_bound", "leading_one_truncate", "MultiplierErrorStats", "matmul_tier", "p3109",
           "quantize", "quantize_int"]
