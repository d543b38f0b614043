"""Models for training and evaluation: the student (always pruning-patched), teachers, checkpoints.

The student is patched with ``vitaccel.prune`` whatever the recipe: the patch adds no weights,
a dense forward equals the plain model's, and it gives every run the same per-image token and
MAC statistics (a dense teacher can then also be evaluated pruned, without retraining).
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from vitaccel.configtools import ConfigError
from vitaccel.models import create_model
from vitaccel.prune import patch
from vitaccel.train.checkpoint import CheckpointError, load_checkpoint
from vitaccel.train.config import TrainConfig


def model_args(cfg: TrainConfig, num_classes: int) -> dict:
    """What ``create_model`` needs to rebuild the model; saved in checkpoints."""
    return {"name": cfg.model,
            "kwargs": {"num_classes": num_classes, "img_size": cfg.data.img_size, **cfg.model_kwargs}}


def build_model(args: dict) -> nn.Module:
    """A fresh model from ``model_args``' output."""
    try:
        return create_model(args["name"], **args["kwargs"])
    except TypeError as exc:  # e.g. a CNN given img_size, or a misspelt model_kwargs key
        raise ConfigError(f"model: {args['name']!r} cannot be built with arguments {sorted(args['kwargs'])} "
                          f"({exc})") from exc


def prune_args(cfg: TrainConfig) -> dict:
    return {"layer": cfg.prune_layer, "rule": cfg.rule, "value": cfg.value, "package": cfg.package}


def build_student(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The model to train, patched for pruning at ``prune_layer`` (dense until told otherwise)."""
    model = build_model(model_args(cfg, num_classes))
    depth = len(getattr(model, "blocks", ()))
    if depth and not cfg.prune_layer < depth:
        raise ConfigError(f"prune_layer: value {cfg.prune_layer} is not allowed; this {depth}-block "
                          f"model needs 1 <= prune_layer <= {depth - 1} (blocks after P are pruned)")
    try:
        patch(model, **prune_args(cfg))
    except (TypeError, ValueError) as exc:  # not a ViT vitaccel.prune can handle
        raise ConfigError(f"model: value {cfg.model!r} is not allowed; {exc}") from exc
    model.pruning.configure(dense=True)
    return model


def load_weights(model: nn.Module, state: dict, source: str) -> None:
    """``load_state_dict`` (strict) with an error that names where the weights came from."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: its weights do not fit model {type(model).__name__} "
                              f"({str(exc).splitlines()[0]} ...)") from exc


def eval_weights(ckpt: dict) -> dict:
    """The weights to evaluate: the EMA when the run kept one, else the trained ones."""
    return ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"]


def model_from_checkpoint(path: str | Path, pruned: bool = True) -> tuple[nn.Module, dict]:
    """Rebuild a trained model from a vitaccel checkpoint (eval weights, eval mode, CPU).

    ``pruned``: patch it with the pruning settings it was trained with. Returns (model, ckpt).
    """
    ckpt = load_checkpoint(path)
    model = build_model(ckpt["model_args"])
    load_weights(model, eval_weights(ckpt), f"checkpoint {str(path)!r}")
    if pruned:
        patch(model, **ckpt["prune"])
    return model.eval(), ckpt


def _grid(model: nn.Module) -> tuple[int, ...]:
    embed = getattr(model, "patch_embed", None)
    return tuple(getattr(embed, "grid_size", ()) or ())


def load_teacher(cfg: TrainConfig, student: nn.Module) -> nn.Module:
    """The frozen dense teacher (checkpoint path or timm name); its patch grid must match the student's."""
    source = cfg.teacher
    if Path(source).suffix in (".pt", ".pth") or Path(source).exists():
        teacher, _ = model_from_checkpoint(source, pruned=False)
        where = f"checkpoint {source!r}"
    else:
        import timm
        if not timm.is_model(source):
            raise ConfigError(f"teacher: value {source!r} is not allowed; it is neither an existing "
                              "checkpoint file nor a timm model name")
        teacher = create_model(source, pretrained=cfg.teacher_pretrained, img_size=cfg.data.img_size,
                               num_classes=student.num_classes)
        where = f"timm model {source!r}"
    if _grid(teacher) != _grid(student):
        raise ConfigError(f"teacher: value {source!r} is not allowed; the {where} has a "
                          f"{'x'.join(map(str, _grid(teacher))) or 'no'} patch grid but the student "
                          f"{cfg.model!r} has {'x'.join(map(str, _grid(student)))}: token distillation "
                          f"needs one teacher score per student patch")
    if cfg.lambda_logits > 0 and teacher.num_classes != student.num_classes:
        raise ConfigError(f"lambda_logits: logit distillation needs the teacher's {teacher.num_classes} "
                          f"classes to equal the student's {student.num_classes}")
    teacher.eval().requires_grad_(False)
    return teacher


def init_from(model: nn.Module, path: str) -> None:
    """Initialise ``model`` from a checkpoint's eval weights (same architecture), e.g. the teacher."""
    ckpt = load_checkpoint(path)
    load_weights(model, eval_weights(ckpt), f"init {path!r}")
