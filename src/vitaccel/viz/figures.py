"""Report figures: accuracy against MACs and energy, and the multipliers' error distributions."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter  # noqa: E402

ENERGY_XLABEL = "estimated energy per image (µJ, log scale; energy table and assumptions in the report)"

def _plain_log_ticks(axis: object, low: float, high: float) -> None:
    """Log-axis ticks at 1-2-5 steps within [low, high], written as plain numbers; no minor labels."""
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
             for m in (1, 2, 5) if low <= m * 10.0 ** e <= high]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def accuracy_vs_macs(rows: list[dict], path: str | Path,
                     title: str = "Accuracy vs MACs: one student, many densities") -> None:
    """Top-1 against MACs per image at each density (the report's density rows); dense is a star.

    ``rows``: dicts with ``density`` (label), ``macs``, ``top1`` and ``macs_ratio``; the first is dense.
    """
    dense, pruned = rows[0], rows[1:]
    fig, ax = plt.subplots(figsize=(6.6, 4.4))
    ax.plot([r["macs"] / 1e6 for r in pruned], [r["top1"] for r in pruned], "o-", color="tab:blue", label="pruned")
    for r in pruned:
        ax.annotate(r["density"], (r["macs"] / 1e6, r["top1"]), textcoords="offset points", xytext=(5, -11),
                    fontsize=8, color="tab:blue")
    ax.plot([dense["macs"] / 1e6], [dense["top1"]], "*", ms=14, color="tab:red", label="dense")
    ax.axhline(dense["top1"] - 1.0, color="grey", ls=":", lw=1, label="dense - 1 pt")
    ax.set_xlabel("MACs per image (millions, mean over the validation images)")
    ax.set_ylabel("top-1 accuracy (%)")
    top = ax.secondary_xaxis("top", functions=(lambda m: 100 * m * 1e6 / dense["macs"],
                                               lambda p: p * dense["macs"] / 1e8))
    top.set_xlabel("% of dense MACs")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def accuracy_vs_energy(runs: list[dict], path: str | Path, xlabel: str = ENERGY_XLABEL) -> None:
    """Estimated energy per image of every accelerator x density, with its top-1 written at each point.

    One row per accelerator (in the order of ``runs``), one marker and colour per density, staggered
    within the row so that no two markers or labels overlap; energy on a log axis with plain ticks.
    ``runs``: dicts with ``accelerator``, ``density`` (label), ``energy_uj`` and ``top1``.
    """
    accelerators = list(dict.fromkeys(r["accelerator"] for r in runs))
    densities = list(dict.fromkeys(r["density"] for r in runs))
    step = 0.8 / max(len(densities), 1)
    colors, markers = plt.get_cmap("tab10"), "os^Dv<>P*X"
    fig, ax = plt.subplots(figsize=(8.0, 0.75 * len(accelerators) * max(1, len(densities) / 3) + 1.4))
    for r in runs:
        i, j = accelerators.index(r["accelerator"]), densities.index(r["density"])
        y = i + (j - (len(densities) - 1) / 2) * step
        ax.scatter(r["energy_uj"], y, marker=markers[j % len(markers)], color=colors(j % 10), s=36, zorder=3)
        ax.annotate(f"{r['top1']:.2f}%", (r["energy_uj"], y), textcoords="offset points", xytext=(7, -3),
                    fontsize=7, color=colors(j % 10))
    ax.set_yticks(range(len(accelerators)), accelerators)
    ax.set_ylim(len(accelerators) - 0.5, -0.5)
    ax.set_xscale("log")
    energies = [r["energy_uj"] for r in runs]
    low, high = min(energies) / 1.3, max(energies) * 1.6
    ax.set_xlim(low, high)
    _plain_log_ticks(ax.xaxis, low, high)
    ax.set_xlabel("\n".join(textwrap.wrap(xlabel, 95)))
    ax.set_title("Energy per image of every accelerator x density (labels: top-1)", fontsize=10)
    ax.grid(alpha=0.3, axis="x", which="major")
    handles = [plt.Line2D([], [], ls="", marker=markers[j % len(markers)], color=colors(j % 10), label=d)
               for j, d in enumerate(densities)]
    ax.legend(handles=handles, title="density", fontsize=8, title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def multiplier_errors(errors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Histograms of each multiplier's relative error over uniformly distributed operands."""
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    for name, e in errors.items():
        ax.hist(100 * e.double().numpy(), bins=60, histtype="step", lw=1.5,
                label=f"{name}: mean {100 * e.mean():+.2f}%, std {100 * e.std(correction=0):.2f}%")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("relative error of the product (%)")
    ax.set_ylabel("operand values")
    ax.set_title("Leading-one truncated multipliers: error over uniform int8 activations")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
