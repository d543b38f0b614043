"""Checkpoint format 2: format-1 files still load, evaluate and resume; contents are verified by a digest;
models are rebuilt only from validated fields (issue 13; issue 14 defects 7, 8, 9, 16)."""

import shutil
from pathlib import Path

import pytest
import torch

from vitaccel.configtools import from_dict, to_dict
from vitaccel.errors import CheckpointError
from vitaccel.train import TrainConfig, load_checkpoint, model_from_checkpoint, train, val_loader, validate_at
from vitaccel.train.build import model_args
from vitaccel.train.checkpoint import save_atomic

# Written by `vitaccel train` before format 2 (flat prune_layer/rule/value/package, no digest):
#   vitaccel train --config digits-sait epochs=2 model=vit_pico_patch4_32 prune_layer=1
#       lambda_distill=0 lambda_logits=0 teacher=null init=null batch_size=32 out_dir=/tmp/rest-old/pico
FORMAT_1 = Path(__file__).parent / "fixtures" / "v1-sait-pico.pt"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_format_1_checkpoint_loads_nested_and_evaluates_as_it_was_trained():
    ckpt = load_checkpoint(FORMAT_1)
    assert ckpt["format"] == "vitaccel-train/2" and "prune" not in ckpt
    assert ckpt["config"]["prune"] == {"layer": 1, "rule": "mass", "value": 0.75, "package": True,
                                       "dense": False}
    assert not {"prune_layer", "rule", "value", "package"} & set(ckpt["config"])
    model, _ = model_from_checkpoint(FORMAT_1)
    assert model.pruning.config.layer == 1 and model.pruning.config.value == 0.75
    from vitaccel.data import build_datasets
    cfg = from_dict(TrainConfig, ckpt["config"])
    loader = val_loader(build_datasets(cfg.data).val, 512)
    recorded = ckpt["history"][-1]  # what training measured when it wrote the file
    dense, pruned = validate_at(model, loader, None), validate_at(model, loader, ("mass", 0.75))
    assert dense["acc"] == pytest.approx(recorded["val_acc_dense"])
    assert pruned["acc"] == pytest.approx(recorded["val_acc_pruned"])
    assert pruned["kept"] == pytest.approx(recorded["val_kept_pruned"])


def test_a_format_1_run_folder_resumes_after_being_moved(tmp_path):
    folder = tmp_path / "moved"
    folder.mkdir()
    shutil.copy(FORMAT_1, folder / "last.pt")
    config = {**load_checkpoint(FORMAT_1)["config"], "out_dir": str(folder), "epochs": 3}
    history = train(from_dict(TrainConfig, config), resume=True)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    resumed = load_checkpoint(folder / "last.pt")
    assert resumed["format"] == "vitaccel-train/2" and resumed["epoch"] == 3


def test_stale_checkpoint_temporaries_are_removed_when_a_run_starts(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(FORMAT_1, folder / "last.pt")
    for name in (".last.pt.x1y2.tmp", ".best.pt.abc.tmp"):  # what kill -9 during a write leaves
        (folder / name).write_bytes(b"partial")
    (folder / "notes.tmp").write_text("mine")
    config = {**load_checkpoint(FORMAT_1)["config"], "out_dir": str(folder), "epochs": 2}
    train(from_dict(TrainConfig, config), resume=True)  # all epochs done: nothing to train
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt", "metrics.jsonl", "notes.tmp"]


def _tiny_checkpoint(path: Path, **changes) -> dict:
    """A valid format-2 checkpoint of an untrained pico ViT, with ``changes`` applied to its dict."""
    import vitaccel.models
    cfg = TrainConfig(model="vit_pico_patch4_32")
    model = vitaccel.models.create_model("vit_pico_patch4_32", num_classes=10, img_size=32)
    state = {"model": model.state_dict(), "config": to_dict(cfg), "model_args": model_args(cfg, 10),
             "classes": [str(d) for d in range(10)], "epoch": 1}
    state.update(changes)
    save_atomic(state, path)
    return state


def test_a_flipped_byte_in_a_tensor_is_detected(tmp_path):
    path = tmp_path / "last.pt"
    state = _tiny_checkpoint(path)
    model_from_checkpoint(path)  # intact: loads
    largest = max(state["model"].values(), key=lambda t: t.numel())
    data = bytearray(path.read_bytes())
    at = bytes(data).find(largest.numpy().tobytes())
    assert at > 0
    data[at + largest.numel() * 2] ^= 0x10  # one bit, in the middle of the largest tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt: its contents do not match the digest"):
        load_checkpoint(path)


@pytest.mark.parametrize("changes, message", [
    ({"model_args": {"name": "vit_pico_patch4_32", "kwargs": {"num_classes": 10, "img_size": 32,
                                                            "checkpoint_path": "/etc/passwd"}}},
     "'model_args' is missing or does not match its config"),
    ({"model_args": None}, "'model_args' is missing"),
    ({"model_args": "vit_pico_patch4_32"}, "'model_args' is missing or does not match"),
    ({"config": {**to_dict(TrainConfig()), "model_kwargs": {"pretrained_cfg_overlay": {"file": "/etc/passwd"}}}},
     "its config is invalid .*key 'pretrained_cfg_overlay' is not allowed"),
    ({"config": {**to_dict(TrainConfig()), "epochs": 0}},
     "its config is invalid"),
    ({"classes": "0123456789"}, "'classes' must be a non-empty list"),
])
def test_untrusted_model_fields_are_refused(tmp_path, changes, message):
    path = tmp_path / "evil.pt"
    _tiny_checkpoint(path, **changes)
    with pytest.raises(CheckpointError, match=message):
        model_from_checkpoint(path)


def test_a_checkpoint_cannot_make_vitaccel_build_a_bigger_model_than_it_holds(tmp_path):
    path = tmp_path / "huge.pt"
    cfg = from_dict(TrainConfig, {"model": "vit_huge_patch14_224", "data": {"name": "digits", "img_size": 448}})
    _tiny_checkpoint(path, config=to_dict(cfg), model_args=model_args(cfg, 10))
    with pytest.raises(CheckpointError, match=r"holds \d+ weights but its model 'vit_huge_patch14_224' has \d+"):
        model_from_checkpoint(path)
