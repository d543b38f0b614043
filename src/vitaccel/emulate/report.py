"""What an emulation run found: one row per captured op, the ops left native, the model output error.

``Report.table()`` is the terminal view, ``Report.to_json()`` the machine-readable one
(non-finite numbers are written as the strings "inf", "-inf", "nan" so the JSON stays standard).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vitaccel.viz.table import columns, fmt


@dataclass
class OpRow:
    """A captured matrix product (an op, or one product of a decomposed op such as ``.qk``)."""

    name: str
    kind: str
    shape: str
    calls: int
    tier: str
    exact: bool
    sqnr_db: float | None = None       # None: not measured (stats=False)
    max_rel_err: float | None = None
    scales: str = ""                   # integer datapaths: how each operand was scaled


@dataclass
class NativeRow:
    """A matrix-like op that ran native float32, and why."""

    name: str
    kind: str
    shape: str
    calls: int
    reason: str


@dataclass
class Report:
    accelerator: str
    tier: str                                  # the tiers the ops ran on, comma separated
    exact: bool                                # every op bit-identical to the golden model
    ops: list[OpRow] = field(default_factory=list)
    native: list[NativeRow] = field(default_factory=list)
    forwards: int = 0                          # model calls compared with the float32 model
    output_sqnr_db: float | None = None
    output_max_rel_err: float | None = None
    accuracy: float | None = None              # emulated model, when labels were given
    reference_accuracy: float | None = None    # float32 model on the same inputs
    agreement: float | None = None             # fraction of top-1 predictions that agree

    def to_dict(self) -> dict:
        return _finite(asdict(self))

    def to_json(self, path: str | Path | None = None) -> str:
        """The report as JSON; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def table(self) -> str:
        """A plain-text table for the terminal."""
        if self.tier == "native":
            lines = [f"accelerator {self.accelerator}: native float32, nothing emulated"]
        else:
            lines = [f"accelerator {self.accelerator}: tier {self.tier or '-'}, "
                     f"{'bit-exact' if self.exact else 'not bit-exact'} vs the golden model"]
        rows = [(r.name, r.kind, r.shape, str(r.calls), r.tier, "yes" if r.exact else "no",
                 fmt(r.sqnr_db, ".1f"), fmt(r.max_rel_err, ".2e"), r.scales or "-") for r in self.ops]
        lines += columns(("op", "kind", "shape", "calls", "tier", "exact", "SQNR dB", "max rel err", "scales"),
                         rows)
        if self.native:
            lines += ["", f"ran native float32 ({len(self.native)} ops):"]
            lines += columns(("op", "kind", "shape", "calls", "reason"),
                              [(r.name, r.kind, r.shape, str(r.calls), r.reason) for r in self.native])
        lines.append("")
        if self.forwards:
            lines.append(f"model output vs float32 over {self.forwards} forward(s): "
                         f"SQNR {fmt(self.output_sqnr_db, '.1f')} dB, "
                         f"max rel err {fmt(self.output_max_rel_err, '.2e')}")
        else:
            lines.append("model output: not compared (stats off, or the model ran in training mode)")
        if self.accuracy is not None:
            lines.append(f"top-1 accuracy: emulated {self.accuracy:.2%}, float32 {self.reference_accuracy:.2%}, "
                         f"agreement {self.agreement:.2%}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _finite(obj: object) -> object:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
