"""vitaccel.train building blocks: config, losses, checkpoints, metrics, distributed helpers."""

import math
import pickle
import random

import numpy as np
import pytest
import torch

from vitaccel.configtools import ConfigError, from_dict
from vitaccel.prune import PruneConfig
from vitaccel.train import CheckpointError, TrainConfig, load_checkpoint, load_config
from vitaccel.train.checkpoint import copy_atomic, rng_state, save_atomic, set_rng_state
from vitaccel.train.config import bundled_configs
from vitaccel.train.distributed import Dist
from vitaccel.train.losses import logit_distillation, token_distillation
from vitaccel.train.metrics import MetricsLog, read_metrics


# ----------------------------------------------------------------------------- config
def test_bundled_configs_load_with_overrides():
    assert {"digits-teacher", "digits-sait"} <= set(bundled_configs())
    cfg = load_config("digits-sait", ["epochs=3", "out_dir=/tmp/x", "seed=5", "data.img_size=16"])
    assert (cfg.recipe, cfg.epochs, cfg.out_dir, cfg.seed, cfg.data.img_size) == ("sait", 3, "/tmp/x", 5, 16)
    assert [cfg.pruned_epoch(e) for e in (1, 2, 3, 4)] == [False, True, False, True]
    assert load_config("digits-teacher").recipe == "dense"


def test_config_file_path_and_missing(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 2\nmodel: vit_pico_patch4_32\n")
    assert load_config(str(path)).epochs == 2
    with pytest.raises(ConfigError, match="--config: 'nope' is neither a file nor a bundled config"):
        load_config("nope")


@pytest.mark.parametrize("overrides, message", [
    (["epoch=3"], "epoch: unknown key"),
    (["data.nmae=digits"], "data.nmae: unknown key"),
    (["epochs=0"], "epochs: value 0 is not allowed; must be >= 1"),
    (["epochs=three"], "epochs: value 'three' is not allowed; an integer is required"),
    (["prune.rule=top"], "prune.rule: value 'top' is not allowed; choose one of"),
    (["prune.value=1.5"], "prune.value: value 1.5 is not allowed; rule 'mass' needs 0 < value <= 1"),
    (["prune.layer=0"], "prune.layer: value 0 is not allowed; the pruning layer P is 1-based"),
    (["prune.dense=true"], "prune: value .* is not allowed; dense is chosen per epoch"),
    (["prune_layer=1"], r"prune_layer: unknown key; the pruning settings are one section now: use prune.layer"),
    (["rule=topk"], r"rule: unknown key; .*use prune.rule \(in YAML: prune: \{rule: 'topk'\}\)"),
    (["model_kwargs={checkpoint_path: /etc/passwd}"], "model_kwargs: .* key 'checkpoint_path' is not allowed"),
    (["model_kwargs={pretrained_cfg_overlay: {file: x}}"], "key 'pretrained_cfg_overlay' is not allowed"),
    (["teacher=null"], "teacher: required key is missing"),
    (["min_lr=1"], "min_lr: value 1.0 is not allowed; must be <= lr"),
    (["warmup_epochs=-1"], "warmup_epochs: value -1 is not allowed; must be >= 0"),
    (["amp=fp8"], "amp: value 'fp8' is not allowed"),
    (["lr"], "override 'lr' is not of the form key=value"),
])
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("digits-sait", overrides)


def test_prune_section_is_a_prune_config_and_partial_sections_keep_defaults():
    cfg = load_config("digits-sait")
    assert cfg.prune == PruneConfig(layer=1, rule="mass", value=0.75)
    assert load_config("digits-teacher", ["prune.rule=topk"]).prune == PruneConfig(layer=2, rule="topk", value=0.9)


def test_sait_without_distillation_needs_no_teacher():
    cfg = from_dict(TrainConfig, {"recipe": "sait", "lambda_distill": 0.0, "schedule": "sparse"})
    assert not cfg.needs_teacher and all(cfg.pruned_epoch(e) for e in (1, 2, 3))
    assert not from_dict(TrainConfig, {"recipe": "dense"}).pruned_epoch(2)


# ----------------------------------------------------------------------------- losses
def test_token_distillation_is_kl_teacher_to_student():
    teacher = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
    student = torch.tensor([[0.25, 0.5, 0.25], [0.1, 0.1, 0.8]], requires_grad=True)
    loss = token_distillation(teacher, student)
    expected = (0.5 * math.log(2) + 0.25 * math.log(0.5)) / 2  # second image matches: KL 0
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert token_distillation(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)
    # a token the student scores zero: large but finite
    assert math.isfinite(token_distillation(teacher, torch.tensor([[1.0, 0.0, 0.0]] * 2)).item())
    with pytest.raises(ValueError, match="same"):
        token_distillation(teacher, student[:, :2])


def test_logit_distillation():
    a = torch.randn(4, 10)
    assert logit_distillation(a, a, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    b = torch.randn(4, 10)
    t = 2.0
    p, q = (b / t).softmax(-1), (a / t).softmax(-1)
    expected = (p * (p.log() - q.log())).sum(-1).mean() * t * t
    assert logit_distillation(a, b, t).item() == pytest.approx(expected.item(), rel=1e-5)


# ----------------------------------------------------------------------------- checkpoints
def test_save_atomic_round_trip_and_no_leftovers(tmp_path):
    path = tmp_path / "run" / "last.pt"
    save_atomic({"w": torch.arange(3.0), "epoch": 2, "cfg": {"a": [1, 2]}}, path)
    save_atomic({"w": torch.arange(4.0), "epoch": 3, "cfg": {"a": [1, 2]}}, path)  # replaces
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 3 and torch.equal(ckpt["w"], torch.arange(4.0))
    copy_atomic(path, tmp_path / "run" / "best.pt")
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt", "last.pt"]


def test_save_atomic_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "last.pt"
    save_atomic({"epoch": 1}, path)
    with pytest.raises((pickle.PicklingError, AttributeError)):  # which one depends on where the lambda lives
        save_atomic({"epoch": 2, "bad": lambda: 0}, path)  # cannot be pickled
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(garbage)
    good = tmp_path / "good.pt"
    save_atomic({"w": torch.randn(1000)}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a vitaccel training checkpoint"):
        load_checkpoint(foreign)


def test_rng_state_survives_a_checkpoint(tmp_path):
    save_atomic({"rng": rng_state()}, tmp_path / "r.pt")
    before = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    after = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]


# ----------------------------------------------------------------------------- metrics, dist
def test_metrics_log_restart_and_append(tmp_path):
    log = MetricsLog(tmp_path)
    log.restart([{"epoch": 1, "a": 1.0}])
    log.append({"epoch": 2, "a": 0.5})
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"epoch": 1, "a": 1.0}, {"epoch": 2, "a": 0.5}]
    log.restart([{"epoch": 1, "a": 1.0}])
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == 1


def test_single_process_dist_and_sharding():
    d = Dist(0, 1, torch.device("cpu"))
    assert d.is_main and not d.active and d.sum([1.0, 2.0]) == [1.0, 2.0] and d.gather("x") == ["x"]
    shards = [Dist(r, 3, torch.device("cpu")).shard(10) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(10))
