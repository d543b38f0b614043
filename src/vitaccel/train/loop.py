"""The training loop of both recipes: dense (a teacher) and SaiT (alternating dense/pruned epochs
with token distillation), in one process or under ``torchrun``.

Everything that can be wrong with the inputs (config, data, teacher, checkpoints) is checked in
``Run.__init__``, before the first step. Each epoch ends with a validation (dense and pruned), an
atomic ``last.pt`` (and ``best.pt``) and one metrics line; ``resume=True`` restores every state
from ``last.pt``, including each rank's RNGs, so a killed run ends with the same weights as one
that was never interrupted.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from vitaccel.configtools import ConfigError, check_writable, from_dict, to_dict
from vitaccel.data import DataBundle, build_datasets
from vitaccel.prune import cls_attention
from vitaccel.train.amp import autocast, check_amp, grad_scaler
from vitaccel.train.build import build_student, init_from, load_teacher, model_args
from vitaccel.train.checkpoint import (
    clean_temporaries,
    copy_atomic,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from vitaccel.train.config import TrainConfig
from vitaccel.train.distributed import Dist, setup, teardown
from vitaccel.train.losses import logit_distillation, stage_distillation
from vitaccel.train.metrics import MetricsLog
from vitaccel.train.validation import val_loader, validate

# Per-epoch training sums (losses are summed per image), reduced over ranks once per epoch.
TRAIN_SUMS = ("images", "correct", "kept", "loss", "loss_label", "loss_distill", "loss_logits")
# Keys that may change when a run is resumed; any other difference is an error (``out_dir`` may:
# a run folder that was moved or copied resumes where it now is).
RESUMABLE_CHANGES = ("epochs", "progress", "num_workers", "eval_batch_size", "tensorboard", "out_dir")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False,
          data: DataBundle | None = None) -> list[dict]:
    """Train per ``cfg``; returns the per-epoch metrics (also in ``out_dir/metrics.jsonl``).

    ``resume``: continue ``out_dir/last.pt``. Without it, an ``out_dir`` that already holds a run
    is an error unless ``overwrite``. ``data``: train and validate on these sets instead of
    ``build_datasets(cfg.data)`` (e.g. one fold of a cross-validation).
    """
    dist = setup(cfg.device)
    try:
        return Run(cfg, dist, resume, overwrite, data).fit()
    finally:
        teardown(dist)


class Run:
    """One training run: its models, data, optimiser state and history."""

    def __init__(self, cfg: TrainConfig, dist: Dist, resume: bool, overwrite: bool,
                 data: DataBundle | None = None) -> None:
        self.cfg, self.dist = cfg, dist
        self.out = Path(cfg.out_dir)
        ckpt = self._check_out_dir(resume, overwrite)
        check_amp(cfg.amp, dist.device)
        if cfg.batch_size % dist.world_size:
            raise ConfigError(f"batch_size: value {cfg.batch_size} is not allowed; the global batch must be "
                              f"divisible by the {dist.world_size} processes")
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        seed_everything(cfg.seed)  # same initial weights on every rank

        self.data = build_datasets(cfg.data) if data is None else data
        self.student = build_student(cfg, self.data.num_classes)
        self.teacher = load_teacher(cfg, self.student).to(dist.device) if cfg.needs_teacher else None
        if cfg.init:
            init_from(self.student, cfg.init)
        self.student.to(dist.device)
        self.model = (DistributedDataParallel(self.student, device_ids=[dist.device.index]
                                              if dist.device.type == "cuda" else None)
                      if dist.active else self.student)
        self.ema = ModelEmaV3(self.student, decay=cfg.ema_decay) if cfg.ema_decay else None
        self.log = MetricsLog(self.out, cfg.tensorboard) if dist.is_main else None

        self.train_loader = self._train_loader()
        self.val_loader = val_loader(self.data.val, cfg.eval_batch_size, dist, cfg.num_workers)
        steps_per_epoch = len(self.train_loader)
        self.optimizer = create_optimizer_v2(self.student, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
        total = cfg.epochs * steps_per_epoch
        warmup = min(cfg.warmup_epochs * steps_per_epoch, total - 1)  # short test runs keep a cosine step
        self.scheduler = CosineLRScheduler(self.optimizer, t_initial=total - warmup,
                                           lr_min=cfg.min_lr, warmup_t=warmup, warmup_lr_init=cfg.lr * 0.01,
                                           warmup_prefix=True, t_in_epochs=False)
        self.scaler = grad_scaler(cfg.amp, dist.device)
        self.start_epoch, self.step, self.best, self.history = 1, 0, -1.0, []
        if ckpt is not None:
            self._restore(ckpt)
        else:
            # Different augmentation streams per rank, fixed by the seed.
            seed_everything(cfg.seed * 1000 + dist.rank)
        if self.log:
            self.log.restart(self.history)

    # ----------------------------------------------------------------- setup helpers
    def _check_out_dir(self, resume: bool, overwrite: bool) -> dict | None:
        if self.dist.is_main:
            check_writable(self.out, "out_dir")
            clean_temporaries(self.out)  # left by a run killed while writing a checkpoint
        last = self.out / "last.pt"
        if not resume:
            if last.exists() and not overwrite:
                raise ConfigError(f"out_dir: {str(self.out)!r} already holds a run (last.pt); pass --resume to "
                                  "continue it or --overwrite to start again")
            return None
        if not last.exists():
            raise ConfigError(f"--resume: no checkpoint to resume at {str(last)!r}; train without --resume first")
        ckpt = load_checkpoint(last)
        # through the schema, so keys added since the checkpoint was written read as their defaults
        saved, now = to_dict(from_dict(TrainConfig, ckpt["config"])), to_dict(self.cfg)
        changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])
        if changed:
            raise ConfigError(f"--resume: the config differs from the one {str(last)!r} was trained with in "
                              f"{changed} (only {list(RESUMABLE_CHANGES)} may change)")
        return ckpt

    def _train_loader(self) -> DataLoader:
        cfg, dist = self.cfg, self.dist
        per_rank = cfg.batch_size // dist.world_size
        if len(self.data.train) < cfg.batch_size:
            raise ConfigError(f"batch_size: value {cfg.batch_size} is not allowed; the training set has only "
                              f"{len(self.data.train)} images")
        # The same sampler in one process: the global batch of step i is then the same images for
        # any number of processes (rank r takes positions r, r+W, ... of the shuffled order).
        self.sampler = DistributedSampler(self.data.train, num_replicas=dist.world_size, rank=dist.rank,
                                          shuffle=True, seed=cfg.seed, drop_last=True)
        return DataLoader(self.data.train, batch_size=per_rank, sampler=self.sampler, drop_last=True,
                          num_workers=cfg.num_workers, pin_memory=dist.device.type == "cuda")

    def _restore(self, ckpt: dict) -> None:
        self.student.load_state_dict(ckpt["model"])
        if self.ema is not None:
            self.ema.module.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.start_epoch, self.step = ckpt["epoch"] + 1, ckpt["step"]
        self.best, self.history = ckpt["best"], ckpt["history"]
        if self.dist.is_main and self.history and self.history[-1]["best"]:
            copy_atomic(self.out / "last.pt", self.out / "best.pt")  # in case the kill came between the two
        states = ckpt["rng"]
        if len(states) == self.dist.world_size:
            set_rng_state(states[self.dist.rank])
        else:  # a different number of processes: exact continuation is impossible, stay deterministic
            seed_everything(self.cfg.seed * 1000 + self.dist.rank + 7919 * ckpt["epoch"])

    # ----------------------------------------------------------------- the loop
    def fit(self) -> list[dict]:
        cfg = self.cfg
        if self.dist.is_main and self.start_epoch > cfg.epochs:
            print(f"{self.out}: all {cfg.epochs} epochs already done")
        for epoch in range(self.start_epoch, cfg.epochs + 1):
            record = {"epoch": epoch, **self._train_epoch(epoch), **self._validate()}
            record["best"] = record["val_acc"] > self.best
            self.best = max(self.best, record["val_acc"])
            self.history.append(record)
            self._save(epoch, record["best"])
            if self.log:
                self.log.append(record)
                tqdm.write(_summary(record, cfg.epochs))
        if self.log:
            self.log.close()
        return self.history

    def _train_epoch(self, epoch: int) -> dict:
        cfg, dist = self.cfg, self.dist
        pruned = cfg.pruned_epoch(epoch)
        self.student.pruning.configure(dense=not pruned, rule=cfg.prune.rule, value=cfg.prune.value)
        self.sampler.set_epoch(epoch)
        self.model.train()
        sums = torch.zeros(len(TRAIN_SUMS), dtype=torch.float64, device=dist.device)  # no host sync per step
        start = time.perf_counter()
        bar = tqdm(self.train_loader, desc=f"epoch {epoch}/{cfg.epochs} {'pruned' if pruned else 'dense'}",
                   leave=False, disable=not (cfg.progress and dist.is_main), dynamic_ncols=True)
        for i, (x, y) in enumerate(bar):
            sums += self._step(x.to(dist.device, non_blocking=True), y.to(dist.device, non_blocking=True))
            if not bar.disable and i % 10 == 0:
                bar.set_postfix(loss=f"{sums[3].item() / sums[0].item():.3f}", refresh=False)
        elapsed = time.perf_counter() - start
        total = dict(zip(TRAIN_SUMS, dist.sum(sums)))
        n = total.pop("images")
        out = {"phase": "pruned" if pruned else "dense", "lr": self.optimizer.param_groups[0]["lr"],
               "train_acc": 100.0 * total.pop("correct") / n, "train_kept": total.pop("kept") / n}
        out.update({f"train_{k}": v / n for k, v in total.items()})
        out["train_images_per_s"] = n / elapsed
        return out

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimiser step; returns this batch's sums in ``TRAIN_SUMS`` order."""
        cfg = self.cfg
        with autocast(cfg.amp, self.dist.device):
            logits = self.model(x)
            label = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            distill = logits_kd = torch.zeros((), device=x.device)
            if self.teacher is not None:
                with torch.no_grad():
                    target = cls_attention(self.teacher, x, cfg.teacher_block) if cfg.lambda_distill > 0 else None
                    teacher_logits = self.teacher(x) if cfg.lambda_logits > 0 else None
                if target is not None:
                    distill = stage_distillation(target, self.student.pruning.stages)
                if teacher_logits is not None:
                    logits_kd = logit_distillation(logits, teacher_logits, cfg.distill_temperature)
            loss = label + cfg.lambda_distill * distill + cfg.lambda_logits * logits_kd
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.student.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        self.scheduler.step_update(self.step)
        if self.ema is not None:
            self.ema.update(self.student, step=self.step)
        n = torch.tensor(float(len(y)), device=x.device)
        return torch.stack([n, (logits.argmax(-1) == y).sum().float(),
                            self.student.pruning.stats["kept"].sum().float(),
                            *(part.detach().float() * n for part in (loss, label, distill, logits_kd))]).double()

    def _validate(self) -> dict:
        """Validation dense and pruned (rule/value of the config) on the eval weights (EMA if kept)."""
        cfg = self.cfg
        model = self.ema.module if self.ema is not None else self.student
        out = {}
        for phase, dense in (("dense", True), ("pruned", False)):
            model.pruning.configure(dense=dense, rule=cfg.prune.rule, value=cfg.prune.value)
            r = validate(model, self.val_loader, self.dist, cfg.amp, cfg.progress, desc=f"val {phase}")
            out.update({f"val_acc_{phase}": r["acc"], f"val_kept_{phase}": r["kept"],
                        f"val_kept_std_{phase}": r["kept_std"], f"val_macs_{phase}": r["macs"],
                        f"val_macs_std_{phase}": r["macs_std"]})
        out["val_macs_saving"] = 1.0 - out["val_macs_pruned"] / out["val_macs_dense"]
        # What "best" means: the dense accuracy for a teacher; for a SaiT student, which must be good
        # at both densities, the mean of the two.
        out["val_acc"] = (out["val_acc_dense"] if cfg.recipe == "dense"
                          else (out["val_acc_dense"] + out["val_acc_pruned"]) / 2)
        return out

    def _save(self, epoch: int, best: bool) -> None:
        rng = self.dist.gather(rng_state())  # every rank's, for an exact resume
        if not self.dist.is_main:
            return
        state = {"model": self.student.state_dict(),
                 "ema": self.ema.module.state_dict() if self.ema is not None else None,
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "scaler": self.scaler.state_dict(), "epoch": epoch, "step": self.step, "best": self.best,
                 "rng": rng, "config": to_dict(self.cfg), "history": self.history,
                 "model_args": model_args(self.cfg, self.data.num_classes),
                 "classes": self.data.classes, "mean": list(self.data.mean), "std": list(self.data.std)}
        save_atomic(state, self.out / "last.pt")
        if best:
            copy_atomic(self.out / "last.pt", self.out / "best.pt")


def _summary(r: dict, epochs: int) -> str:
    return (f"epoch {r['epoch']}/{epochs} [{r['phase']}] loss {r['train_loss']:.3f} "
            f"(label {r['train_loss_label']:.3f}, distill {r['train_loss_distill']:.3f}) "
            f"train {r['train_acc']:.1f}% | val dense {r['val_acc_dense']:.2f}% "
            f"pruned {r['val_acc_pruned']:.2f}% at {r['val_kept_pruned']:.1f} patches, "
            f"MACs -{100 * r['val_macs_saving']:.0f}% | lr {r['lr']:.2e} | "
            f"{r['train_images_per_s']:.0f} img/s{' *' if r['best'] else ''}")
