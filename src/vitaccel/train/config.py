"""``TrainConfig``: one validated dataclass for both recipes, read from YAML plus ``key=value`` overrides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitaccel.configtools import (
    ConfigError,
    apply_overrides,
    field,
    from_dict,
    load_yaml,
    shipped,
    shipped_names,
    validate,
)
from vitaccel.data import DataConfig
from vitaccel.models import model_kwargs_problem
from vitaccel.prune import PruneConfig

# Keys of the pruning settings before they moved into the ``prune`` section (checkpoint format 1).
FORMER_PRUNE_KEYS = {"prune_layer": "layer", "rule": "rule", "value": "value", "package": "package"}


def _at_least(lo: float, strict: bool = False):
    def check(v: float) -> str | None:
        ok = v > lo if strict else v >= lo
        return None if ok else f"must be {'>' if strict else '>='} {lo}"
    return check


def _training_prune(v: PruneConfig) -> str | None:
    return "dense is chosen per epoch by schedule; leave prune.dense false" if v.dense else None


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved in every checkpoint.

    ``recipe: dense`` trains a plain ViT (a teacher). ``recipe: sait`` trains a student that
    prunes tokens per ``prune`` (a ``PruneConfig``: layer P or several ``layers``, rule, value,
    placement, package): odd epochs dense, even epochs pruned
    (``schedule: alternate``; ``sparse`` prunes every epoch, for ablations), with the loss
    ``CE + lambda_distill * KL(teacher CLS attention || student TIS) [+ lambda_logits * KD]``, the
    KL averaged over the pruning stages (each over the original patches it scored).
    """

    recipe: str = field("dense", choices=("dense", "sait"), help="dense teacher or SaiT student")
    model: str = field("vit_nano_patch4_32", help="timm model name (vitaccel.models adds small ViTs)")
    model_kwargs: dict[str, Any] = field(default_factory=dict, check=model_kwargs_problem,
                                         help="extra timm create_model arguments, e.g. drop_path_rate")
    data: DataConfig = field(default_factory=DataConfig, help="data set section")
    out_dir: str = field("runs/train", help="folder for metrics.jsonl, last.pt, best.pt")
    seed: int = field(0, help="seed of initialisation, augmentation and shuffling")
    epochs: int = field(30, check=_at_least(1), help="epochs, numbered from 1")
    batch_size: int = field(64, check=_at_least(1), help="global batch (split over processes)")
    eval_batch_size: int = field(256, check=_at_least(1), help="batch per process for validation")
    lr: float = field(1e-3, check=_at_least(0, strict=True), help="peak learning rate (AdamW)")
    min_lr: float = field(1e-5, check=_at_least(0), help="learning rate at the end of the cosine")
    weight_decay: float = field(0.05, check=_at_least(0), help="AdamW decoupled weight decay")
    warmup_epochs: int = field(2, check=_at_least(0), help="linear warm-up epochs (capped below epochs)")
    label_smoothing: float = field(0.1, check=lambda v: None if 0 <= v < 1 else "must be in [0, 1)")
    grad_clip: float | None = field(1.0, check=_at_least(0, strict=True), help="max gradient norm, or null")
    amp: str = field("none", choices=("none", "bf16", "fp16"), help="autocast dtype (fp16 needs CUDA)")
    ema_decay: float | None = field(None, check=lambda v: None if 0 < v < 1 else "must be in (0, 1)",
                                    help="weight EMA (validation and checkpoints' eval weights), or null")
    device: str = field("auto", choices=("auto", "cpu", "cuda"), help="auto: CUDA when available")
    num_workers: int = field(0, check=_at_least(0), help="DataLoader worker processes")
    deterministic: bool = field(False, help="torch.use_deterministic_algorithms (exact resume on GPU)")
    progress: bool = field(True, help="tqdm progress bars")
    tensorboard: bool = field(False, help="also log to out_dir/tensorboard (needs the tensorboard package)")
    init: str | None = field(None, help="checkpoint whose weights initialise the model (fine-tuning)")
    # SaiT recipe
    teacher: str | None = field(None, help="teacher: a vitaccel checkpoint path or a timm model name")
    teacher_pretrained: bool = field(False, help="timm teacher: download its pretrained weights")
    teacher_layer: int | None = field(None, check=lambda v: None if v >= 1 else "a 1-based block, or null (the last)",
                                      help="teacher block (1-based) whose CLS attention is the target; null: last")
    prune: PruneConfig = field(default_factory=lambda: PruneConfig(layer=2), check=_training_prune,
                               help="token pruning (layer or layers, rule, value, placement, package); a "
                                    "partial section keeps the other defaults")
    schedule: str = field("alternate", choices=("alternate", "sparse"),
                          help="alternate: odd epochs dense, even pruned; sparse: every epoch pruned")
    lambda_distill: float = field(1.0, check=_at_least(0), help="weight of the token distillation KL")
    lambda_logits: float = field(0.0, check=_at_least(0), help="weight of logit distillation (0: off)")
    distill_temperature: float = field(1.0, check=_at_least(0, strict=True), help="logit distillation temperature")

    def __post_init__(self) -> None:
        validate(self)
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr: value {self.min_lr} is not allowed; must be <= lr ({self.lr})")
        if self.recipe == "sait" and self.teacher is None and self.needs_teacher:
            raise ConfigError("teacher: required key is missing (recipe sait with lambda_distill or "
                              "lambda_logits > 0 needs a teacher checkpoint or timm name)")

    @property
    def needs_teacher(self) -> bool:
        return self.recipe == "sait" and (self.lambda_distill > 0 or self.lambda_logits > 0)

    @property
    def teacher_block(self) -> int:
        """The teacher's distillation block, 0-based (-1: the last)."""
        return -1 if self.teacher_layer is None else self.teacher_layer - 1

    def pruned_epoch(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (numbered from 1) trains pruned: even epochs, or all with ``sparse``."""
        return self.recipe == "sait" and (self.schedule == "sparse" or epoch % 2 == 0)


def resolve_config_path(config: str) -> Path:
    """A config file path, or the name of a bundled one (``digits-teacher`` -> configs/train/...)."""
    path = Path(config)
    if path.is_file():
        return path
    if path.suffix in ("", ".yaml") and path.stem in bundled_configs():
        return shipped("train", path.stem)
    raise ConfigError(f"--config: {config!r} is neither a file nor a bundled config "
                      f"(bundled: {bundled_configs()})")


def bundled_configs() -> list[str]:
    """Names of the training recipes shipped inside the package."""
    return shipped_names("train")


def load_config(config: str, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config (path or bundled name), apply ``key=value`` overrides, validate."""
    data = apply_overrides(load_yaml(resolve_config_path(config)), list(overrides))
    for old, new in FORMER_PRUNE_KEYS.items():
        if old in data:
            raise ConfigError(f"{old}: unknown key; the pruning settings are one section now: use prune.{new} "
                              f"(in YAML: prune: {{{new}: {data[old]!r}}})")
    return from_dict(TrainConfig, data)
