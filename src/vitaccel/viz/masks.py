"""Token-mask figure: which patches a pruning-patched ViT kept for each image."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure


def _to_pixels(images: torch.Tensor, mean: Optional[Sequence[float]],
               std: Optional[Sequence[float]]) -> torch.Tensor:
    """Undo the input normalisation (or stretch each image to [0, 1] when not given)."""
    pixels = images.detach().float().cpu()
    if mean is not None and std is not None:
        shape = (1, -1, 1, 1)
        pixels = pixels * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
    else:
        low = pixels.amin(dim=(1, 2, 3), keepdim=True)
        high = pixels.amax(dim=(1, 2, 3), keepdim=True)
        pixels = (pixels - low) / (high - low).clamp_min(1e-12)
    return pixels.clamp(0, 1)


def set_density(model: torch.nn.Module, setting: tuple[str, float] | None) -> None:
    """Configure a pruning-patched model: ``(rule, value)``, or None for dense."""
    if setting is None:
        model.pruning.configure(dense=True)
    else:
        model.pruning.configure(dense=False, rule=setting[0], value=setting[1])


def _kept(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, int, int, int, int]:
    """Run ``model`` once on ``images``: the (B, N) keep mask, patch height and width, grid height and width."""
    with torch.no_grad():
        model(images)
    keep = model.pruning.keep.cpu()
    patch_h, patch_w = model.patch_embed.patch_size
    grid_h, grid_w = images.shape[2] // patch_h, images.shape[3] // patch_w
    if grid_h * grid_w != keep.shape[1]:
        raise ValueError(f"images: {tuple(images.shape[2:])} px do not map to the model's "
                         f"{keep.shape[1]} patches of {patch_h}x{patch_w}")
    return keep, patch_h, patch_w, grid_h, grid_w


def _pruned_map(keep: torch.Tensor, patch: tuple[int, int], grid: tuple[int, int],
                size: Sequence[int]) -> torch.Tensor:
    """(B, 1, H, W): 1 on the pixels of pruned patches (a border the grid does not cover counts as kept)."""
    (ph, pw), (gh, gw) = patch, grid
    pruned = F.interpolate((~keep).view(keep.shape[0], 1, gh, gw).float(), size=(gh * ph, gw * pw), mode="nearest")
    return F.pad(pruned, (0, size[1] - pruned.shape[3], 0, size[0] - pruned.shape[2]))


def _outline(ax: object, keep: torch.Tensor, patch: tuple[int, int], grid: tuple[int, int], color: str) -> None:
    """Draw the boundary of the kept patches (one image's (N,) mask) on ``ax`` in pixel coordinates."""
    (ph, pw), (gh, gw) = patch, grid
    kept = keep.view(gh, gw).tolist()
    segments = []
    for r in range(gh):
        for c in range(gw):
            if not kept[r][c]:
                continue
            x0, x1, y0, y1 = c * pw - 0.5, (c + 1) * pw - 0.5, r * ph - 0.5, (r + 1) * ph - 0.5
            if r == 0 or not kept[r - 1][c]:
                segments.append(((x0, x1), (y0, y0)))
            if r == gh - 1 or not kept[r + 1][c]:
                segments.append(((x0, x1), (y1, y1)))
            if c == 0 or not kept[r][c - 1]:
                segments.append(((x0, x0), (y0, y1)))
            if c == gw - 1 or not kept[r][c + 1]:
                segments.append(((x1, x1), (y0, y1)))
    for xs, ys in segments:
        ax.plot(xs, ys, color=color, lw=1.0, solid_capstyle="butt")


def token_masks_at(model: torch.nn.Module, images: torch.Tensor, settings: Sequence[tuple[str, float] | None],
                   path: Optional[str | Path] = None, *, mean: Optional[Sequence[float]] = None,
                   std: Optional[Sequence[float]] = None, dim: float = 0.35, color: str = "#ffcc00",
                   dpi: int = 110) -> Figure:
    """One row per density in ``settings`` (None: dense; else (rule, value)), one column per image of
    ``images`` (B, C, H, W): the kept patches outlined, the pruned ones dimmed, ``k/N`` under each.

    Runs the pruning-patched ``model`` once per setting and leaves it at the last one. Saves a PNG to
    ``path`` when given; returns the matplotlib Figure.
    """
    pixels = _to_pixels(images, mean, std)
    batch = images.shape[0]
    fig = Figure(figsize=(1.45 * batch + 1.0, 1.6 * len(settings) + 0.5), layout="constrained")
    axes = fig.subplots(len(settings), batch, squeeze=False)
    cmap = "gray" if images.shape[1] == 1 else None
    for row, setting in zip(axes, settings):
        set_density(model, setting)
        keep, ph, pw, gh, gw = _kept(model, images)
        pruned = _pruned_map(keep, (ph, pw), (gh, gw), images.shape[2:])
        shown = torch.lerp(pixels, dim * pixels, pruned)
        for i, ax in enumerate(row):
            ax.imshow(shown[i].permute(1, 2, 0).squeeze(-1).numpy(), cmap=cmap, vmin=0, vmax=1,
                      interpolation="nearest")
            _outline(ax, keep[i], (ph, pw), (gh, gw), color)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{int(keep[i].sum())}/{keep.shape[1]}", fontsize=8, labelpad=2)
        row[0].set_ylabel("dense" if setting is None else f"{setting[0]}={setting[1]:g}", fontsize=9)
    fig.suptitle(f"Patches kept after block {model.pruning.config.layer} (outlined), per density", fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def token_masks(model: torch.nn.Module, images: torch.Tensor, path: Optional[str | Path] = None, *,
                mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                dim: float = 0.25, fog: float = 0.6, ncols: int = 8, dpi: int = 100,
                outline: str = "#ffcc00") -> Figure:
    """Grid of ``images`` (B, C, H, W) with the kept patches outlined in ``outline`` and the pruned dimmed.

    Runs ``model`` once (no gradients) with its current pruning settings and reads
    ``model.pruning.keep``. Pruned patches are dimmed: ``dim * pixel + (1 - dim) * fog`` (a grey
    haze that shows on dark and bright images alike); each title gives the patch tokens kept.
    ``mean``/``std`` undo the input normalisation (default: stretch each image to [0, 1]).
    Saves a PNG to ``path`` when given; returns the matplotlib Figure.
    """
    pruning = getattr(model, "pruning", None)
    if pruning is None:
        raise ValueError("model: is not pruning-patched; call vitaccel.prune.patch(model) first")
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images: expected a (B, 1 or 3, H, W) tensor, got "
                         f"{tuple(getattr(images, 'shape', ()))}")
    for name, level in (("dim", dim), ("fog", fog)):
        if not 0 <= level <= 1:
            raise ValueError(f"{name}: value {level!r} is not allowed; use a number in [0, 1]")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols: value {ncols!r} is not allowed; use an integer >= 1")
    keep, patch_h, patch_w, grid_h, grid_w = _kept(model, images)
    batch, num_patches = keep.shape
    pruned = _pruned_map(keep, (patch_h, patch_w), (grid_h, grid_w), images.shape[2:])
    pixels = _to_pixels(images, mean, std)
    pixels = torch.lerp(pixels, dim * pixels + (1 - dim) * fog, pruned)

    ncols = min(ncols, batch)
    nrows = math.ceil(batch / ncols)
    fig = Figure(figsize=(2.0 * ncols, 2.2 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    cmap = "gray" if images.shape[1] == 1 else None
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < batch:
            ax.imshow(pixels[i].permute(1, 2, 0).squeeze(-1).numpy(), cmap=cmap, vmin=0, vmax=1,
                      interpolation="nearest")
            _outline(ax, keep[i], (patch_h, patch_w), (grid_h, grid_w), outline)
            ax.set_title(f"{int(keep[i].sum())}/{num_patches} kept", fontsize=9)
    cfg = pruning.config
    mode = "dense" if cfg.dense else f"{cfg.rule}({cfg.value:g})"
    fig.suptitle(f"tokens kept after block {cfg.layer}: {mode}", fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig
