"""Plain tables for the terminal and Markdown: one formatter for every report in vitaccel."""

from __future__ import annotations

import math
from typing import Sequence


def fmt(value: float | None, spec: str = ".3g") -> str:
    """A number for a table: '-' for missing, 'inf'/'nan' spelled out."""
    if value is None:
        return "-"
    return f"{value:{spec}}" if math.isfinite(value) else str(value)


def columns(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Aligned text lines: header, a rule, then the rows."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return [line.format(*header), line.format(*("-" * w for w in widths))] + [line.format(*r) for r in rows]


def markdown(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
