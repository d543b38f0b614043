"""Training runs end to end on tiny models (dense and SaiT), bad inputs, and ``vitaccel eval``."""

import importlib.util
import math

import pytest
import torch
from PIL import Image

from vitaccel.cli import main
from vitaccel.commands.eval import run_eval
from vitaccel.configtools import ConfigError, from_dict
from vitaccel.data import DataError
from vitaccel.train import CheckpointError, TrainConfig, load_checkpoint, train
from vitaccel.train.distributed import LOCAL
from vitaccel.train.loop import Run
from vitaccel.train.metrics import read_metrics

# A 2-block, 32-wide ViT on 16 px digits (4x4 patches): an epoch takes about a second.
TINY = {"model": "vit_pico_patch4_32", "data": {"name": "digits", "img_size": 16}, "epochs": 2,
        "batch_size": 64, "eval_batch_size": 512, "lr": 0.003, "warmup_epochs": 1, "progress": False,
        "prune": {"layer": 1, "rule": "topk", "value": 0.5}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded machine OpenMP threads
    spinning against each other make them many times slower; restored after this module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(tmp_path, name="run", **changes) -> TrainConfig:
    data = {**TINY, "out_dir": str(tmp_path / name), **changes}
    data["data"] = {**TINY["data"], **changes.get("data", {})}
    return from_dict(TrainConfig, data)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory, one_thread):
    """A dense tiny teacher, trained once for this module: (path to best.pt, its history)."""
    folder = tmp_path_factory.mktemp("teacher")
    history = train(tiny(folder, ema_decay=0.9))
    return folder / "run" / "best.pt", history


def test_dense_run_writes_metrics_and_checkpoints(teacher_ckpt):
    best, history = teacher_ckpt
    out = best.parent
    assert [r["epoch"] for r in history] == [1, 2] and {r["phase"] for r in history} == {"dense"}
    assert read_metrics(out / "metrics.jsonl") == history
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 2 and last["history"] == history and len(last["rng"]) == 1
    assert last["model_args"] == {"name": "vit_pico_patch4_32", "kwargs": {"num_classes": 10, "img_size": 16}}
    assert last["ema"] is not None and not torch.equal(last["ema"]["head.weight"], last["model"]["head.weight"])
    assert load_checkpoint(best)["epoch"] == max(history, key=lambda r: r["val_acc"])["epoch"]
    for r in history:
        assert r["train_loss_distill"] == 0 and r["train_kept"] == 16 and r["val_kept_dense"] == 16
        assert r["val_kept_pruned"] == 8  # topk 0.5 of 16 patches
        assert 0 < r["val_macs_pruned"] < r["val_macs_dense"] and r["val_macs_saving"] > 0.2
        assert math.isfinite(r["train_loss"]) and r["lr"] > 0 and r["train_images_per_s"] > 0
    assert history[1]["train_loss"] < history[0]["train_loss"]  # it learns


def test_sait_run_alternates_and_distils(tmp_path):
    history = train(tiny(tmp_path, recipe="sait", teacher="vit_pico_patch4_32", lambda_logits=0.5,
                         prune={"layer": 1, "rule": "mass", "value": 0.8}))
    assert [r["phase"] for r in history] == ["dense", "pruned"]
    dense, pruned = history
    assert dense["train_kept"] == 16 and pruned["train_kept"] < 16
    assert dense["train_loss_distill"] > 0 and pruned["train_loss_logits"] > 0
    assert pruned["train_loss"] == pytest.approx(
        pruned["train_loss_label"] + pruned["train_loss_distill"] + 0.5 * pruned["train_loss_logits"], rel=1e-5)
    assert pruned["val_acc"] == pytest.approx((pruned["val_acc_dense"] + pruned["val_acc_pruned"]) / 2)


def test_sait_student_starts_from_init_and_uses_checkpoint_teacher(tmp_path, teacher_ckpt):
    best, _ = teacher_ckpt
    run = Run(tiny(tmp_path, recipe="sait", teacher=str(best), init=str(best)), LOCAL, False, False)
    weights = load_checkpoint(best)["ema"]  # eval weights: the EMA
    for name, value in run.student.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert not any(p.requires_grad for p in run.teacher.parameters()) and not hasattr(run.teacher, "pruning")
    assert run.student.pruning.config.layer == 1


def test_bf16_autocast_on_cpu(tmp_path):
    history = train(tiny(tmp_path, epochs=1, amp="bf16", recipe="sait", teacher="vit_pico_patch4_32"))
    assert math.isfinite(history[0]["train_loss"])


# ----------------------------------------------------------------------------- bad input
def _corrupt(path):
    path.write_bytes(b"\x00garbage" * 100)
    return str(path)


def _empty_folder(tmp_path):
    (tmp_path / "images" / "cat").mkdir(parents=True)
    return str(tmp_path / "images")


def _tiny_images(tmp_path):
    for c in "ab":
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(tmp_path / "img" / c / f"{i}.png")
    return str(tmp_path / "img")


BAD = {
    "missing teacher": (lambda t, ck: dict(recipe="sait", teacher=str(t / "nope.pt")), CheckpointError,
                        "checkpoint .*nope.pt' does not exist"),
    "corrupt teacher": (lambda t, ck: dict(recipe="sait", teacher=_corrupt(t / "bad.pt")), CheckpointError,
                        "corrupt"),
    "unknown teacher": (lambda t, ck: dict(recipe="sait", teacher="vit_no_such_model"), ConfigError,
                        "teacher: value 'vit_no_such_model' is not allowed; it is neither"),
    "teacher grid (timm)": (lambda t, ck: dict(recipe="sait", teacher="vit_tiny_patch16_224"), ConfigError,
                            "teacher: .* has a 1x1 patch grid but the student .* has 4x4"),
    "teacher grid (checkpoint)": (lambda t, ck: dict(recipe="sait", teacher=str(ck), data={"img_size": 32}),
                                  ConfigError, "has a 4x4 patch grid but the student .* has 8x8"),
    "corrupt init": (lambda t, ck: dict(init=_corrupt(t / "init.pt")), CheckpointError, "corrupt"),
    "init of another model": (lambda t, ck: dict(init=str(ck), model="vit_nano_patch4_32"), CheckpointError,
                              "init .*: its weights do not fit"),
    "empty data folder": (lambda t, ck: dict(data={"name": "imagefolder", "root": _empty_folder(t)}), DataError,
                          "no images found"),
    "missing data folder": (lambda t, ck: dict(data={"name": "imagefolder", "root": str(t / "none")}), DataError,
                            "folder does not exist"),
    "batch larger than data": (lambda t, ck: dict(data={"name": "imagefolder", "root": _tiny_images(t)}),
                               ConfigError, "batch_size: value 64 is not allowed; the training set has only 6"),
    "prune layer past the end": (lambda t, ck: dict(prune={"layer": 2}), ConfigError,
                                 "prune.layer: value 2 is not allowed; this 2-block model needs"),
    "fp16 on cpu": (lambda t, ck: dict(amp="fp16", device="cpu"), ConfigError, "amp: value 'fp16'"),
    "cuda missing": (lambda t, ck: dict(device="cuda"), ConfigError, "device: value 'cuda'"),
    "unknown model": (lambda t, ck: dict(model="vit_nope"), ConfigError, "model: 'vit_nope' is not a timm model"),
    "not a vit": (lambda t, ck: dict(model="resnet18"), ConfigError, "model: 'resnet18' cannot be built"),
    "vit without cls": (lambda t, ck: dict(model_kwargs={"class_token": False, "global_pool": "avg"}),
                        ConfigError, "model: value 'vit_pico_patch4_32' is not allowed; .*class token"),
    "tensorboard missing": (lambda t, ck: dict(tensorboard=True), ConfigError, "tensorboard package is not installed"),
    "model_kwargs typo": (lambda t, ck: dict(model_kwargs={"dept": 3}), ConfigError, "cannot be built"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_fails_before_training(tmp_path, teacher_ckpt, case):
    if case == "cuda missing" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    if case == "tensorboard missing" and importlib.util.find_spec("tensorboard"):
        pytest.skip("tensorboard is installed here")
    make, error, message = BAD[case]
    cfg = tiny(tmp_path, **make(tmp_path, teacher_ckpt[0]))
    with pytest.raises(error, match=message):
        train(cfg)
    assert not (tmp_path / "run").exists()  # nothing written, no step taken


def test_out_dir_and_resume_guards(tmp_path):
    with pytest.raises(ConfigError, match="--resume: no checkpoint to resume"):
        train(tiny(tmp_path), resume=True)
    train(tiny(tmp_path, epochs=1))
    with pytest.raises(ConfigError, match="already holds a run .* --resume .* --overwrite"):
        train(tiny(tmp_path, epochs=1))
    with pytest.raises(ConfigError, match=r"--resume: the config differs .* in \['lr'\]"):
        train(tiny(tmp_path, epochs=2, lr=0.001), resume=True)
    history = train(tiny(tmp_path, epochs=2), resume=True)  # epochs may grow
    assert [r["epoch"] for r in history] == [1, 2]
    assert len(read_metrics(tmp_path / "run" / "metrics.jsonl")) == 2
    assert len(train(tiny(tmp_path, epochs=1), overwrite=True)) == 1


# ----------------------------------------------------------------------------- eval
def test_eval_default_dense_and_rule(teacher_ckpt, capsys):
    best, _ = teacher_ckpt
    rows = run_eval(str(best), progress=False)
    assert [r["setting"] for r in rows] == ["dense", "topk=0.5"]
    assert rows[0]["kept"] == 16 and rows[0]["macs_ratio"] == pytest.approx(1.0)
    assert rows[1]["kept"] == 8 and rows[1]["kept_std"] == 0 and rows[1]["macs_ratio"] < 0.8
    assert rows[0]["images"] == 359 and 0 <= rows[1]["acc"] <= 100
    (only,) = run_eval(str(best), rule="mass", value=0.6, progress=False)
    assert only["setting"] == "mass=0.6" and 1 <= only["kept"] < 16 and only["kept_std"] >= 0
    (dense,) = run_eval(str(best), dense=True, progress=False)
    assert dense["acc"] == rows[0]["acc"]
    assert "top-1" in capsys.readouterr().out


def test_eval_at_another_pruning_layer(teacher_ckpt):
    best, _ = teacher_ckpt
    (at1,) = run_eval(str(best), rule="topk", value=0.5, progress=False)
    (at2,) = run_eval(str(best), rule="topk", value=0.5, layer=2, progress=False)
    assert at1["kept"] == at2["kept"] == 8 and at2["macs"] > at1["macs"]  # fewer blocks pruned
    with pytest.raises(ConfigError, match="--layer: value 3 is not allowed"):
        run_eval(str(best), layer=3, progress=False)


def test_eval_sweep_writes_csv_and_png(teacher_ckpt, tmp_path):
    best, _ = teacher_ckpt
    rows = run_eval(str(best), do_sweep=True, rule="topk", values=[0.75, 0.5, 0.25], out=str(tmp_path / "sw"),
                    progress=False)
    assert [r["kept"] for r in rows] == [16, 12, 8, 4]
    assert [r["macs"] for r in rows] == sorted((r["macs"] for r in rows), reverse=True)
    lines = (tmp_path / "sw" / "sweep.csv").read_text().splitlines()
    assert lines[0].startswith("setting,rule,value,acc") and len(lines) == 5
    with Image.open(tmp_path / "sw" / "sweep.png") as img:
        assert img.size[0] > 400 and img.size[1] > 300


def test_eval_cli_errors(teacher_ckpt, tmp_path, capsys):
    best, _ = teacher_ckpt
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", _corrupt(tmp_path / "c.pt")]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(best), "--rule", "mass"]) == 2
    assert "--value: required with --rule mass" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(best), "--rule", "topk", "--value", "2"]) == 2
    assert "value: value 2.0 is not allowed" in capsys.readouterr().err
    assert main(["train", "--config", "digits-teacher", "epochz=3"]) == 2
    assert "epochz: unknown key" in capsys.readouterr().err
