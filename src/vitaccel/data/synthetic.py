"""Procedural scenes: one object on clutter, its class is its colour, with a ground-truth mask.

The object (a disc, square, triangle, ring, cross or diamond of random size, place and rotation)
is filled with one of six saturated colours: its class. The background is a smooth, desaturated
colour field; the clutter is strokes and small blobs in the same six colours (and greys), so the
class can only be read from the object, which the model has to find. Each scene is drawn from its
own generator seeded with ``(seed, index)``, so a scene does not depend on how many others are
drawn and the data set is identical for a given seed on every machine. The mask marks the
object's pixels; ``TensorImageDataset.patch_masks`` turns it into the patches that hold the
object, the ground truth for which tokens pruning should keep.
"""

from __future__ import annotations

import numpy as np
import torch

SHAPES = ("disc", "square", "triangle", "ring", "cross", "diamond")
COLOURS = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.8, 0.1), "blue": (0.15, 0.25, 0.95),
           "yellow": (0.9, 0.85, 0.1), "magenta": (0.85, 0.1, 0.85), "cyan": (0.1, 0.85, 0.85)}
_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pixels inside ``kind`` in rotated coordinates (u, v) scaled so the shape spans [-1, 1]."""
    r = np.hypot(u, v)
    if kind == "disc":
        return r <= 1.0
    if kind == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if kind == "square":
        return np.maximum(abs(u), abs(v)) <= 0.85
    if kind == "diamond":
        return abs(u) + abs(v) <= 1.0
    if kind == "cross":
        return (np.maximum(abs(u), abs(v)) <= 1.0) & (np.minimum(abs(u), abs(v)) <= 0.3)
    if kind == "triangle":
        return (v <= 0.7) & (v >= 2.0 * abs(u) - 1.0)
    raise ValueError(f"kind: {kind!r} is not a shape; choose one of {list(SHAPES)}")


def render_scene(seed: int, index: int, img_size: int) -> tuple[np.ndarray, int, np.ndarray]:
    """One scene: image (3, S, S) float32 in [0, 1], label (index into COLOURS), mask (S, S) bool."""
    rng = np.random.default_rng([seed, index])
    s = img_size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5

    # Background: a smooth grey field (coarse noise, upsampled) with a faint tint, plus fine noise.
    coarse = rng.uniform(0.25, 0.75, size=(1, 4, 4)) + rng.uniform(-0.08, 0.08, size=(3, 4, 4))
    img = torch.nn.functional.interpolate(torch.from_numpy(coarse.astype(np.float32))[None], size=(s, s),
                                          mode="bilinear", align_corners=False)[0].numpy()
    img += rng.normal(0, 0.04, size=img.shape).astype(np.float32)

    # Clutter: strokes and small blobs, mostly in the class colours: distractors smaller than any object.
    for _ in range(rng.integers(10, 18)):
        p0 = rng.uniform(0, s, size=2)
        ang = rng.uniform(0, np.pi)
        length = rng.uniform(0.0, 0.25) * s  # 0: a blob
        d = np.array([np.cos(ang), np.sin(ang)])
        t = np.clip((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1], 0, length)
        dist = np.hypot(xx - p0[0] - t * d[0], yy - p0[1] - t * d[1])
        width = rng.uniform(0.5, 1.0) if length > 0.05 * s else rng.uniform(1.0, 0.07 * s)
        stroke = _PALETTE[rng.integers(len(_PALETTE))] if rng.uniform() < 0.8 else np.full(3, rng.uniform(0, 1))
        img[:, dist <= width] = (stroke + rng.uniform(-0.1, 0.1, size=3)).astype(np.float32)[:, None]

    # The object: a random shape, size, position and rotation, filled with its class colour.
    label = int(rng.integers(len(COLOURS)))
    radius = rng.uniform(0.13, 0.24) * s
    cx, cy = rng.uniform(radius, s - radius, size=2)
    ang = rng.uniform(-np.pi / 6, np.pi / 6)
    u = ((xx - cx) * np.cos(ang) + (yy - cy) * np.sin(ang)) / radius
    v = (-(xx - cx) * np.sin(ang) + (yy - cy) * np.cos(ang)) / radius
    mask = _shape_mask(SHAPES[rng.integers(len(SHAPES))], u, v)
    colour = _PALETTE[label] + rng.uniform(-0.08, 0.08, size=3).astype(np.float32)
    img[:, mask] = colour[:, None] + rng.normal(0, 0.03, size=(3, int(mask.sum()))).astype(np.float32)
    return np.clip(img, 0, 1), label, mask


def load_synthetic_tensors(num_samples: int, img_size: int, seed: int
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``num_samples`` scenes: images (N, 3, S, S) in [0, 1], labels (N,), masks (N, S, S) bool."""
    scenes = [render_scene(seed, i, img_size) for i in range(num_samples)]
    images = torch.from_numpy(np.stack([sc[0] for sc in scenes]))
    labels = torch.tensor([sc[1] for sc in scenes])
    masks = torch.from_numpy(np.stack([sc[2] for sc in scenes]))
    return images, labels, masks
