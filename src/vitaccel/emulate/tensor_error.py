"""Error of an emulated tensor against its float32 reference, accumulated over calls.

SQNR = 10 log10(sum ref^2 / sum (out - ref)^2) in dB (infinite when the outputs are equal);
max relative error = max |out - ref| / max |ref|, normalised by the largest reference value so
that near-zero elements do not blow it up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TensorError:
    """Running sums for SQNR and max relative error (Python floats across calls; each call's norms are
    float32 reductions, accurate to far better than the 0.1 dB a report shows)."""

    signal: float = 0.0
    noise: float = 0.0
    max_abs_err: float = 0.0
    max_abs_ref: float = 0.0

    def update(self, out: Tensor, ref: Tensor) -> None:
        ref = ref.detach().float()
        err = out.detach().float() - ref
        norm = torch.linalg.vector_norm
        self.signal += norm(ref).item() ** 2
        self.noise += norm(err).item() ** 2
        if err.numel():
            worst = norm(err, math.inf).item()  # nan stays nan: max(nan, x) is nan, max(x, nan) is not
            self.max_abs_err = worst if math.isnan(worst) else max(self.max_abs_err, worst)
            self.max_abs_ref = max(self.max_abs_ref, norm(ref, math.inf).item())

    @property
    def sqnr_db(self) -> float:
        """Signal-to-quantisation-noise ratio in dB (inf: no error; nan: non-finite outputs)."""
        if math.isnan(self.noise):
            return math.nan
        if self.noise == 0.0:
            return math.inf
        if self.signal == 0.0 or math.isinf(self.noise):
            return -math.inf
        return 10.0 * math.log10(self.signal / self.noise)

    @property
    def max_rel_err(self) -> float:
        if self.max_abs_err == 0.0:
            return 0.0
        return self.max_abs_err / self.max_abs_ref if self.max_abs_ref else math.inf
