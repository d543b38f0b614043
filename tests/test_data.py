"""vitaccel.data: digits, synthetic scenes, CIFAR/ImageFolder errors and loading, the seeded split."""

import numpy as np
import pytest
import torch
from PIL import Image

from vitaccel.configtools import ConfigError, from_dict
from vitaccel.data import COLOURS, DataConfig, DataError, build_datasets, render_scene, seeded_split


def test_digits_split_is_fixed_by_seed_and_disjoint():
    a = build_datasets(DataConfig(name="digits", img_size=16, augment=False))
    b = build_datasets(DataConfig(name="digits", img_size=16, augment=False))
    c = build_datasets(DataConfig(name="digits", img_size=16, augment=False, seed=1))
    assert len(a.train) + len(a.val) == 1797 and len(a.val) == round(0.2 * 1797)
    assert a.num_classes == 10 and a.classes[3] == "3"
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)
    x, y = a.val[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and 0 <= y < 10
    assert x.min() >= -1 and x.max() <= 1  # normalised [0, 1] -> [-1, 1]


def test_seeded_split_partitions_indices():
    train, val = seeded_split(100, 0.25, seed=3)
    assert len(val) == 25 and len(train) == 75
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100))
    with pytest.raises(ValueError, match="n: 1 items"):
        seeded_split(1, 0.5, 0)


def test_digits_augmentation_only_on_train():
    bundle = build_datasets(DataConfig(name="digits", img_size=16, augment=True))
    torch.manual_seed(0)
    assert not torch.equal(bundle.train[0][0], bundle.train[0][0])  # random affine
    assert torch.equal(bundle.val[0][0], bundle.val[0][0])


def test_synthetic_scenes_deterministic_and_independent_of_count():
    img, label, mask = render_scene(seed=5, index=7, img_size=32)
    img2, label2, mask2 = render_scene(seed=5, index=7, img_size=32)
    assert np.array_equal(img, img2) and label == label2 and np.array_equal(mask, mask2)
    other, _, _ = render_scene(seed=6, index=7, img_size=32)
    assert not np.array_equal(img, other)
    small = build_datasets(DataConfig(name="synthetic", num_samples=20, augment=False, val_fraction=0.5))
    assert small.classes == list(COLOURS)
    assert small.train.images.shape[1:] == (3, 32, 32) and small.train.masks.shape[1:] == (32, 32)


def test_synthetic_mask_marks_the_object():
    img, label, mask = render_scene(seed=0, index=3, img_size=32)
    assert 0 <= label < len(COLOURS)
    assert 0.02 < mask.mean() < 0.5
    # The object is one flat colour (plus slight noise): its pixels vary far less than the scene.
    assert img[:, mask].std(axis=1).max() < 0.1 < img.std()
    # ... and that colour is its class.
    palette = np.array(list(COLOURS.values()))
    assert np.abs(palette - img[:, mask].mean(axis=1)).sum(axis=1).argmin() == label


def test_synthetic_patch_masks_follow_the_pixel_mask():
    bundle = build_datasets(DataConfig(name="synthetic", num_samples=30, augment=False, val_fraction=0.5))
    patches = bundle.val.patch_masks(4)
    assert patches.shape == (15, 64) and patches.dtype == torch.bool
    assert patches.any(dim=1).all()  # every scene has object patches
    cover = bundle.val.masks[:, :4, :4].float().mean(dim=(1, 2))
    assert torch.equal(patches[:, 0], cover >= 0.25)  # top-left patch
    with pytest.raises(ValueError, match="patch_size: 5 does not divide"):
        bundle.val.patch_masks(5)
    digits = build_datasets(DataConfig(name="digits", img_size=16))
    with pytest.raises(ValueError, match="only 'synthetic'"):
        digits.val.patch_masks(4)


def test_cifar_offline_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"data.name=cifar10: not found in data.root=.*data.download=true"):
        build_datasets(DataConfig(name="cifar10", root=str(tmp_path)))


def _write_images(folder, classes, per_class, size=20):
    rng = np.random.default_rng(0)
    for c in classes:
        (folder / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / c / f"{i}.png")


def test_image_folder_split_and_layout(tmp_path):
    _write_images(tmp_path / "flat", ["a", "b"], 5)
    bundle = build_datasets(DataConfig(name="imagefolder", root=str(tmp_path / "flat"), img_size=16,
                                       val_fraction=0.2))
    assert bundle.classes == ["a", "b"] and len(bundle.train) == 8 and len(bundle.val) == 2
    x, y = bundle.val[0]
    assert x.shape == (3, 16, 16) and y in (0, 1)
    _write_images(tmp_path / "inet" / "train", ["a", "b"], 3)
    _write_images(tmp_path / "inet" / "val", ["a", "b"], 1)
    bundle = build_datasets(DataConfig(name="imagefolder", root=str(tmp_path / "inet"), img_size=16))
    assert len(bundle.train) == 6 and len(bundle.val) == 2


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="data.root: required"):
        build_datasets(DataConfig(name="imagefolder"))
    with pytest.raises(DataError, match="folder does not exist"):
        build_datasets(DataConfig(name="imagefolder", root=str(tmp_path / "missing")))
    with pytest.raises(DataError, match="no images found"):
        build_datasets(DataConfig(name="imagefolder", root=str(tmp_path)))
    (tmp_path / "cat").mkdir()
    with pytest.raises(DataError, match="no images found"):
        build_datasets(DataConfig(name="imagefolder", root=str(tmp_path)))


@pytest.mark.parametrize("data, message", [
    ({"name": "mnist"}, "data.name: value 'mnist' is not allowed"),
    ({"img_size": 4}, "data.img_size: value 4 is not allowed; must be >= 8"),
    ({"val_fraction": 1.5}, "data.val_fraction: value 1.5 is not allowed"),
    ({"sede": 1}, "data.sede: unknown key"),
])
def test_data_config_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(DataConfig, data, "data.")
