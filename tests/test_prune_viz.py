"""token_masks draws each image with exactly its pruned patches dimmed, and writes a PNG."""

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

import vitaccel.prune as prune
from vitaccel.viz import token_masks


def test_token_masks_png_and_dimmed_patches(tmp_path):
    torch.manual_seed(0)
    model = prune.patch(VisionTransformer(img_size=32, patch_size=4, embed_dim=32, depth=3, num_heads=2),
                        layer=2, rule="value", value=1.0).eval()
    images = torch.rand(5, 3, 32, 32) * 0.5  # already in [0, 1] after the identity mean/std below
    path = tmp_path / "masks.png"
    fig = token_masks(model, images, path, mean=(0, 0, 0), std=(1, 1, 1), ncols=3, dim=0.25, fog=0.6)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = model.pruning.keep
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert len(shown) == 5 and len(fig.axes) == 6  # 2 x 3 grid, last cell empty
    for i, ax in enumerate(shown):
        assert ax.get_title() == f"{int(keep[i].sum())}/64 kept"
        pixels = torch.as_tensor(ax.get_images()[0].get_array()).permute(2, 0, 1)
        expected = images[i].clone()
        patch_pruned = (~keep[i]).view(8, 8).repeat_interleave(4, 0).repeat_interleave(4, 1)
        expected[:, patch_pruned] = 0.25 * expected[:, patch_pruned] + 0.75 * 0.6
        assert torch.allclose(pixels, expected, atol=1e-6)
    assert fig.texts[0].get_text() == "tokens kept after block 2: value(1)"


def test_token_masks_errors():
    model = VisionTransformer(img_size=32, patch_size=4, embed_dim=32, depth=3, num_heads=2)
    with pytest.raises(ValueError, match="model: is not pruning-patched"):
        token_masks(model, torch.rand(1, 3, 32, 32))
    prune.patch(model, layer=2)
    with pytest.raises(ValueError, match=r"images: expected a \(B, 1 or 3, H, W\) tensor, got \(3, 32, 32\)"):
        token_masks(model, torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match=r"dim: value 1.5 is not allowed"):
        token_masks(model, torch.rand(1, 3, 32, 32), dim=1.5)
