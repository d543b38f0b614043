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


def token_masks(model: torch.nn.Module, images: torch.Tensor, path: Optional[str | Path] = None, *,
                mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                dim: float = 0.25, fog: float = 0.6, ncols: int = 8, dpi: int = 100) -> Figure:
    """Grid of ``images`` (B, C, H, W) with the patches the patched ``model`` pruned dimmed.

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
    with torch.no_grad():
        model(images)
    keep = pruning.keep.cpu()
    batch, num_patches = keep.shape
    patch_h, patch_w = model.patch_embed.patch_size
    grid_h, grid_w = images.shape[2] // patch_h, images.shape[3] // patch_w
    if grid_h * grid_w != num_patches:
        raise ValueError(f"images: {tuple(images.shape[2:])} px do not map to the model's "
                         f"{num_patches} patches of {patch_h}x{patch_w}")
    pruned = (~keep).view(batch, 1, grid_h, grid_w).float()
    pruned = F.interpolate(pruned, size=(grid_h * patch_h, grid_w * patch_w), mode="nearest")
    pruned = F.pad(pruned, (0, images.shape[3] - pruned.shape[3], 0, images.shape[2] - pruned.shape[2]))
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
            ax.set_title(f"{int(keep[i].sum())}/{num_patches} kept", fontsize=9)
    cfg = pruning.config
    mode = "dense" if cfg.dense else f"{cfg.rule}({cfg.value:g})"
    fig.suptitle(f"tokens kept after block {cfg.layer}: {mode}", fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig
