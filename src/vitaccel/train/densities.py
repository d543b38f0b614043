"""One model at many densities: accuracy vs MACs per image, as rows and a CSV table (the plot is
``vitaccel.viz.figures.accuracy_vs_macs``)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch.nn as nn
from torch.utils.data import DataLoader

from vitaccel.train.distributed import LOCAL, Dist
from vitaccel.train.validation import validate_at

# Parameters per rule, from nearly dense to aggressive.
DEFAULT_VALUES = {
    "mass": (0.99, 0.97, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5),
    "topk": (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2),
    "value": (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0),
}
COLUMNS = ("setting", "rule", "value", "acc", "kept", "kept_std", "tokens", "tokens_std",
           "macs", "macs_std", "macs_padded", "macs_ratio", "images")


def sweep(model: nn.Module, loader: DataLoader, rule: str, values: tuple[float, ...], dist: Dist = LOCAL,
          amp: str = "none", progress: bool = False) -> list[dict]:
    """Evaluate dense, then ``rule`` at each of ``values``; rows carry MACs relative to dense."""
    rows = [validate_at(model, loader, setting, dist, amp, progress)
            for setting in [None, *((rule, v) for v in values)]]
    for row in rows:
        row["macs_ratio"] = row["macs"] / rows[0]["macs"]
    return rows


def write_csv(rows: list[dict], path: str | Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
