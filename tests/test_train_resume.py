"""A training run killed at an arbitrary point and resumed ends with the same weights as an
uninterrupted one (real subprocess kill, deterministic CPU run, tiny model)."""

import os
import subprocess
import sys
import time

import torch

from vitaccel.train import load_checkpoint
from vitaccel.train.metrics import read_metrics

# SaiT with a (random, seeded) timm teacher, augmentation, EMA: every RNG and state is exercised.
CONFIG = """\
recipe: sait
model: vit_pico_patch4_32
teacher: vit_pico_patch4_32
data: {name: digits, img_size: 16, augment: true}
epochs: 4
batch_size: 32
lr: 0.003
warmup_epochs: 1
prune:
  layer: 1
  rule: mass
  value: 0.8
ema_decay: 0.9
progress: false
"""
TIMING = ("train_images_per_s",)


def _command(config, out_dir, *extra):
    return [sys.executable, "-m", "vitaccel", "train", "--config", str(config), f"out_dir={out_dir}", *extra]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _same_tensors(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b))
    return a == b


def test_killed_run_resumes_to_identical_weights(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    subprocess.run(_command(config, tmp_path / "full"), check=True, env=_env(), timeout=300,
                   capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(config, killed), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    metrics = killed / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, "run ended before its first epoch"
        time.sleep(0.05)
    time.sleep(0.4)  # now somewhere inside epoch 2 (or writing its checkpoint)
    proc.kill()
    assert proc.wait() != 0, "the run finished before it could be killed"
    done = len(read_metrics(metrics))
    assert 1 <= done < 4
    assert load_checkpoint(killed / "last.pt")["epoch"] >= done  # whole, whatever the kill interrupted

    subprocess.run(_command(config, killed, "--resume"), check=True, env=_env(), timeout=300,
                   capture_output=True)
    full, resumed = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(killed / "last.pt")
    assert resumed["epoch"] == full["epoch"] == 4
    for key in ("model", "ema", "optimizer", "scheduler"):
        assert _same_tensors(full[key], resumed[key]), key
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in full["history"]]
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in resumed["history"]] == strip
    assert [r["epoch"] for r in read_metrics(killed / "metrics.jsonl")] == [1, 2, 3, 4]
