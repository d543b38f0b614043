"""Models for training and evaluation: the student (always pruning-patched), teachers, checkpoints.

The student is patched with ``vitaccel.prune`` whatever the recipe: the patch adds no weights,
a dense forward equals the plain model's, and it gives every run the same per-image token and
MAC statistics (a dense teacher can then also be evaluated pruned, without retraining).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn

from vitaccel.configtools import ConfigError, apply_overrides, from_dict, to_dict
from vitaccel.data import DataConfig
from vitaccel.errors import CheckpointError
from vitaccel.models import create_model
from vitaccel.prune import patch
from vitaccel.train.checkpoint import load_checkpoint
from vitaccel.train.config import TrainConfig


def model_args(cfg: TrainConfig, num_classes: int) -> dict:
    """What ``create_model`` needs to rebuild the model; saved in checkpoints."""
    return {"name": cfg.model,
            "kwargs": {"num_classes": num_classes, "img_size": cfg.data.img_size, **cfg.model_kwargs}}


@contextlib.contextmanager
def _without_storage() -> Iterator[None]:
    """Every parameter and buffer a module registers inside goes to the meta device (no memory).

    Unlike ``torch.device("meta")`` this keeps the constructors' own computations (timm calls
    ``.item()`` on the drop-path schedule) on the CPU.
    """
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(self: nn.Module, name: str, p: nn.Parameter | None) -> None:
        register_parameter(self, name, None if p is None else nn.Parameter(p.to("meta"), p.requires_grad))

    def buffer(self: nn.Module, name: str, b: torch.Tensor | None, persistent: bool = True) -> None:
        register_buffer(self, name, None if b is None else b.to("meta"), persistent=persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


def build_model(args: dict, storage: bool = True) -> nn.Module:
    """A fresh model from ``model_args``' output; ``storage=False``: its weights take no memory."""
    try:
        with contextlib.nullcontext() if storage else _without_storage():
            return create_model(args["name"], **args["kwargs"])
    except TypeError as exc:  # e.g. a CNN given img_size, or a misspelt model_kwargs key
        raise ConfigError(f"model: {args['name']!r} cannot be built with arguments {sorted(args['kwargs'])} "
                          f"({exc})") from exc


def patch_checked(model: nn.Module, prune: dict, refused: str) -> nn.Module:
    """``patch(model, **prune)``; when the model cannot take it, a ConfigError ``"<refused>; <why>"``."""
    try:
        return patch(model, **{k: v for k, v in prune.items() if k != "dense"})
    except (TypeError, ValueError) as exc:  # not a ViT vitaccel.prune can handle, or a layer out of range
        raise ConfigError(f"{refused}; {exc}") from exc


def build_student(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The model to train, patched for pruning at ``cfg.prune``'s layers (dense until told otherwise)."""
    model = build_model(model_args(cfg, num_classes))
    depth = len(getattr(model, "blocks", ()))
    top = depth if cfg.prune.placement == "attention" else depth - 1  # something after the cut to prune
    if depth and not cfg.prune.stages[-1] <= top:
        key, shown = ("prune.layers", cfg.prune.layers) if cfg.prune.layers else ("prune.layer", cfg.prune.layer)
        raise ConfigError(f"{key}: value {shown} is not allowed; this {depth}-block model needs "
                          f"1 <= prune.layer <= {top} with placement {cfg.prune.placement!r} (what follows "
                          "P's cut is pruned)")
    patch_checked(model, to_dict(cfg.prune), f"model: value {cfg.model!r} is not allowed")
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


def checkpoint_config(ckpt: dict, source: str) -> TrainConfig:
    """The validated training config of a loaded checkpoint; CheckpointError naming ``source`` if invalid."""
    try:
        return from_dict(TrainConfig, ckpt.get("config"), "config.")
    except ConfigError as exc:
        raise CheckpointError(f"{source}: its config is invalid ({exc})") from None


def checkpoint_data(ckpt: dict, overrides: list[str], key: str) -> DataConfig:
    """The checkpoint's data section with ``overrides``, validated; the image size must be the model's."""
    data = from_dict(DataConfig, apply_overrides(ckpt["config"]["data"], list(overrides)), "data.")
    trained = ckpt["config"]["data"]["img_size"]
    if data.img_size != trained:
        raise ConfigError(f"{key} img_size={data.img_size}: not allowed; the checkpoint's model takes "
                          f"{trained} px images (leave img_size out)")
    return data


def _checked_args(ckpt: dict, cfg: TrainConfig, source: str) -> dict:
    """``model_args`` rebuilt from the validated config; the stored ones must agree with them."""
    classes = ckpt.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{source}: 'classes' must be a non-empty list of class names")
    args = model_args(cfg, len(classes))
    if ckpt.get("model_args") != args:
        raise CheckpointError(f"{source}: 'model_args' is missing or does not match its config "
                              f"(expected {args}, found {ckpt.get('model_args')!r})")
    return args


def model_from_checkpoint(path: str | Path, pruned: bool = True) -> tuple[nn.Module, dict]:
    """Rebuild a trained model from a vitaccel checkpoint (eval weights, eval mode, CPU).

    The model is built only from validated fields (the config and the class count); it is first
    built without storage, and must have as many weights as the checkpoint holds, so a checkpoint
    cannot make vitaccel build a model larger than itself. ``pruned``: patch it with the pruning
    settings it was trained with. Returns (model, ckpt).
    """
    source = f"checkpoint {str(path)!r}"
    ckpt = load_checkpoint(path)
    cfg = checkpoint_config(ckpt, source)
    args = _checked_args(ckpt, cfg, source)
    weights = eval_weights(ckpt)
    stored = sum(t.numel() for t in weights.values()) if isinstance(weights, dict) else -1
    needed = sum(t.numel() for t in build_model(args, storage=False).state_dict().values())
    if stored != needed:
        raise CheckpointError(f"{source}: holds {stored} weights but its model {cfg.model!r} has {needed}")
    model = build_model(args)
    load_weights(model, weights, source)
    if pruned:
        patch_checked(model, to_dict(cfg.prune), f"{source}: its pruning settings do not fit its model")
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
    depth = len(getattr(teacher, "blocks", ()))
    if cfg.teacher_layer is not None and not cfg.teacher_layer <= depth:
        raise ConfigError(f"teacher_layer: value {cfg.teacher_layer} is not allowed; the teacher has {depth} "
                          f"blocks: use 1 <= teacher_layer <= {depth}, or null for the last")
    teacher.eval().requires_grad_(False)
    return teacher


def init_from(model: nn.Module, path: str) -> None:
    """Initialise ``model`` from a checkpoint's eval weights (same architecture), e.g. the teacher."""
    ckpt = load_checkpoint(path)
    load_weights(model, eval_weights(ckpt), f"init {path!r}")
