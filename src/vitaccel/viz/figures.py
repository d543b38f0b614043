"""Report figures: accuracy against energy, and the multipliers' error distributions."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

ENERGY_XLABEL = "estimated energy per image (µJ, log scale; source and assumptions: the cost section)"


def accuracy_vs_energy(points: list[dict], path: str | Path, xlabel: str = ENERGY_XLABEL) -> None:
    """Top-1 against estimated energy per image, one marker per accelerator, one line per density.

    ``points``: dicts with ``accelerator``, ``density`` (label), ``energy_uj`` and ``acc``.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    accelerators = sorted({p["accelerator"] for p in points})
    densities = list(dict.fromkeys(p["density"] for p in points))
    markers = "o^sDvP*Xh<>"
    colors = plt.get_cmap("tab10")
    for i, acc_name in enumerate(accelerators):
        pts = [p for p in points if p["accelerator"] == acc_name]
        for p in pts:
            ax.scatter(p["energy_uj"], p["acc"], marker=markers[i % len(markers)],
                       color=colors(densities.index(p["density"]) % 10), s=55, zorder=3)
    for j, dens in enumerate(densities):
        pts = sorted((p for p in points if p["density"] == dens), key=lambda p: p["energy_uj"])
        ax.plot([p["energy_uj"] for p in pts], [p["acc"] for p in pts], color=colors(j % 10), lw=0.8, alpha=0.5)
    handles = [plt.Line2D([], [], ls="", marker=markers[i % len(markers)], color="grey", label=a)
               for i, a in enumerate(accelerators)]
    handles += [plt.Line2D([], [], color=colors(j % 10), marker="o", label=d) for j, d in enumerate(densities)]
    ax.legend(handles=handles, fontsize=7, ncol=2, loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Accuracy vs energy: every accelerator preset x token density")
    ax.grid(alpha=0.3, which="both")
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
