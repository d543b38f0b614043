"""scikit-learn's bundled handwritten digits (1797 images, 8x8), resized: the offline default."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def load_digits_tensors(img_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (1797, 3, img_size, img_size) in [0, 1] (grey copied to RGB) and labels (1797,).

    RGB so that any timm model (3 input channels) takes them unchanged.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    images = F.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False)
    return images.clamp(0, 1).expand(-1, 3, -1, -1).contiguous(), torch.as_tensor(digits.target)
