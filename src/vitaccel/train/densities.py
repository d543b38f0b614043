"""One model at many densities: accuracy vs MACs per image, as a CSV table and a PNG plot."""

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


def plot_sweep(rows: list[dict], path: str | Path, title: str) -> None:
    """Top-1 vs mean MACs per image: the rule's curve labelled with its values, dense as a star."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dense, pruned = rows[0], rows[1:]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot([r["macs"] / 1e6 for r in pruned], [r["acc"] for r in pruned], "o-", color="tab:blue",
            label=f"pruned ({pruned[0]['rule']})" if pruned else "pruned")
    for r in pruned:
        ax.annotate(f"{r['value']:g}", (r["macs"] / 1e6, r["acc"]), textcoords="offset points",
                    xytext=(4, -10), fontsize=8, color="tab:blue")
    ax.plot([dense["macs"] / 1e6], [dense["acc"]], "*", ms=14, color="tab:red", label="dense")
    ax.axhline(dense["acc"] - 1.0, color="grey", ls=":", lw=1, label="dense - 1 pt")
    ax.set_xlabel("MACs per image (millions, mean over the val set)")
    ax.set_ylabel("top-1 accuracy (%)")
    secondary = ax.secondary_xaxis("top", functions=(lambda m: 100 * m * 1e6 / dense["macs"],
                                                     lambda p: p * dense["macs"] / 1e8))
    secondary.set_xlabel("% of dense MACs")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
