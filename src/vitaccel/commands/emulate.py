"""``vitaccel emulate``: a model (timm name or vitaccel checkpoint) and a data set on one accelerator config.

Builds the model and the validation batches, then calls ``evaluate``; prints the report and
optionally writes it as JSON.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from vitaccel.commands._shared import (
    calib_method_field,
    check_fits,
    device_field,
    json_field,
    ops_field,
    progress,
    smooth_field,
)
from vitaccel.configtools import Flag, add_config_arguments, config_from_args, field
from vitaccel.errors import ConfigError, EmulateError

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

RANDOM = "random"


def _at_least_one(v: int) -> str | None:
    return None if v >= 1 else "it must be >= 1"


@dataclass
class EmulateConfig:
    """The keys of ``vitaccel emulate``."""

    accelerator: str = field(help="preset name (fp32, fp13, ...) or YAML file")
    model: str | None = field(None, help="timm model name (random weights unless pretrained=true)")
    checkpoint: str | None = field(None, help="vitaccel training checkpoint (.pt); exactly one of model, checkpoint")
    data: str | None = field(None, help="digits | synthetic | cifar10 | cifar100 | random | image folder "
                                        "(default: the checkpoint's data set, else digits)")
    dense: bool = field(False, help="checkpoint: run the pruning student dense")
    rule: str | None = field(None, help="checkpoint: topk | value | mass (default: the trained rule)")
    value: float | None = field(None, help="checkpoint: the rule's parameter (default: the trained value)")
    batches: int = field(10, check=_at_least_one, help="batches to emulate")
    batch_size: int = field(32, check=_at_least_one, help="images per batch")
    img_size: int | None = field(None, help="image size (default: the model's)")
    fast: bool = field(False, help="exact=False: native accumulation order, much faster")
    calib_batches: int = field(4, check=_at_least_one, help="calibration batches (integer datapaths), taken before "
                                                            "and held apart from the evaluated ones")
    calib_method: str = calib_method_field()
    smooth: float | None = smooth_field()
    ops: list[str] = ops_field()
    skip: list[str] = field(default_factory=list, help="fnmatch patterns of ops to run native, e.g. head,blocks.0.*")
    pretrained: bool = field(False, help="timm pretrained weights (needs them cached)")
    seed: int = field(0, help="seed of the data split and of random inputs")
    device: str = device_field(auto="the CPU (emulation on CUDA is not supported yet)")
    json: str | None = json_field()


FLAGS = (Flag("--model", "model"), Flag("--checkpoint", "checkpoint"), Flag("--accelerator", "accelerator"),
         Flag("--data", "data"), Flag("--dense", "dense", switch=True), Flag("--rule", "rule"),
         Flag("--value", "value"), Flag("--batches", "batches"), Flag("--batch-size", "batch_size"),
         Flag("--img-size", "img_size"), Flag("--fast", "fast", switch=True), Flag("--calib-batches", "calib_batches"),
         Flag("--calib-method", "calib_method"), Flag("--smooth", "smooth"), Flag("--ops", "ops"),
         Flag("--skip", "skip"),
         Flag("--pretrained", "pretrained", switch=True), Flag("--seed", "seed"), Flag("--device", "device"),
         Flag("--json", "json"))


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``emulate`` parser."""
    p = sub.add_parser("emulate", help="run a model on an emulated accelerator: per-op and output error, accuracy",
                       description="Run every matrix product of a model (a timm name, or a vitaccel checkpoint at "
                                   "any density) through an emulated accelerator: per-op tier and error, output "
                                   "SQNR and top-1 against float32.")
    add_config_arguments(p, lambda: EmulateConfig, FLAGS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Emulate per the arguments; returns 0."""
    cfg = config_from_args(EmulateConfig, args)
    return run_emulate(model=cfg.model, checkpoint=cfg.checkpoint, accelerator=cfg.accelerator,
                       data=cfg.data, batches=cfg.batches, batch_size=cfg.batch_size,
                       img_size=cfg.img_size, exact=not cfg.fast, calib_batches=cfg.calib_batches,
                       calib_method=cfg.calib_method, skip=cfg.skip, json_path=cfg.json,
                       pretrained=cfg.pretrained, seed=cfg.seed, progress=progress(), device=cfg.device,
                       density=(cfg.rule, cfg.value), dense=cfg.dense, smooth=cfg.smooth,
                       ops=tuple(cfg.ops) if cfg.ops else None)


def _timm_model(name: str, num_classes: int | None, img_size: int | None, pretrained: bool) -> nn.Module:
    import timm.models

    from vitaccel.models import create_model
    kwargs: dict[str, Any] = {"pretrained": pretrained}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if img_size is not None:
        kwargs["img_size"] = img_size
    if pretrained:
        cfg = timm.models.get_pretrained_cfg(name)
        if not (cfg and (cfg.url or cfg.hf_hub_id or cfg.file)):
            raise EmulateError(f"--pretrained: model {name!r} has no pretrained weights in timm; "
                               "leave --pretrained out (random weights) or use --checkpoint")
        try:
            return create_model(name, **kwargs)
        except OSError as exc:  # not cached and no network
            raise EmulateError(f"--pretrained: the weights of {name!r} could not be loaded ({exc}); they must "
                               "be downloadable or in the timm / Hugging Face cache") from None
    return create_model(name, **kwargs)


def _timm_size(name: str) -> int:
    """The image size timm builds ``name`` for; EmulateError naming close matches if unknown."""
    import timm.models

    from vitaccel.models import create_model  # registers vitaccel's small ViTs with timm
    if not timm.models.is_model(name):
        try:
            create_model(name)  # raises the error that names close matches
        except ValueError as exc:
            raise EmulateError(str(exc)) from None
    return timm.models.get_pretrained_cfg(name).input_size[-1]


def _batches(data: str, img_size: int, batch_size: int, seed: int) -> tuple[Iterable, Any]:
    """Validation batches of ``data`` and its DataBundle (None for random inputs)."""
    import torch
    from torch.utils.data import DataLoader

    if data == RANDOM:
        g = torch.Generator().manual_seed(seed)
        return _RandomImages(img_size, batch_size, g), None
    from vitaccel.data import DATASETS, DataConfig, DataError, build_datasets
    if data in DATASETS:
        cfg = DataConfig(name=data, img_size=img_size, augment=False, seed=seed)
    elif Path(data).is_dir():
        cfg = DataConfig(name="imagefolder", root=data, img_size=img_size, augment=False, seed=seed)
    else:
        raise DataError(f"--data: {data!r} is neither a data set name ({', '.join(DATASETS)}, {RANDOM}) "
                        f"nor an existing folder")
    bundle = build_datasets(cfg)
    return DataLoader(bundle.val, batch_size=batch_size, shuffle=False), bundle


class _RandomImages:
    """Endless batches of standard-normal images (no labels): for models with no data at hand."""

    def __init__(self, img_size: int, batch_size: int, generator: torch.Generator) -> None:
        self.shape, self.generator = (batch_size, 3, img_size, img_size), generator

    def __iter__(self) -> Iterator[torch.Tensor]:
        import torch

        while True:
            yield torch.randn(self.shape, generator=self.generator)


def run_emulate(*, model: str | None, checkpoint: str | None, accelerator: str, data: str | None,
                batches: int, batch_size: int, img_size: int | None, exact: bool, calib_batches: int,
                calib_method: str, skip: list[str], json_path: str | None, pretrained: bool,
                seed: int, progress: bool = True, device: str = "auto",
                density: tuple[str | None, float | None] = (None, None), dense: bool = False,
                smooth: float | None = None, ops: tuple[str, ...] | None = None) -> int:
    """The ``vitaccel emulate`` command; returns the exit status.

    A checkpoint runs at ``density`` (rule, value; a None part comes from the checkpoint, so the
    default is its trained density) or dense with ``dense``; a timm model takes neither.
    """
    from vitaccel.configtools import check_writable
    from vitaccel.emulate.backend import resolve_config
    from vitaccel.emulate.evaluation import evaluate
    from vitaccel.viz.masks import set_density

    if (model is None) == (checkpoint is None):
        raise EmulateError("give exactly one of --model NAME and --checkpoint PATH")
    for flag, value in (("--batches", batches), ("--batch-size", batch_size), ("--calib-batches", calib_batches)):
        if value < 1:
            raise EmulateError(f"{flag}: value {value} is not allowed; it must be >= 1")
    if pretrained and checkpoint is not None:
        raise EmulateError("--pretrained: only with --model (a checkpoint holds its own weights)")
    if model is not None and (dense or density != (None, None)):
        raise EmulateError("--dense, --rule, --value: only with --checkpoint (a pruning student's density)")
    if device == "cuda":
        from vitaccel.train.distributed import use_cuda
        use_cuda(device, "--device")
        raise EmulateError("--device: value 'cuda' is not allowed for emulate yet; emulation runs on the CPU "
                           "(use cpu or auto)")
    try:
        config = resolve_config(accelerator)  # a bad config fails before any model is built
    except ConfigError as exc:
        raise EmulateError(f"--accelerator: {exc}") from None
    if json_path:
        check_writable(Path(json_path).parent, "--json")
    if checkpoint is not None:
        from vitaccel.train.build import model_from_checkpoint
        net, ckpt = model_from_checkpoint(checkpoint, pruned=True)
        trained = ckpt["config"]["data"]
        if img_size is not None and img_size != trained["img_size"]:
            raise EmulateError(f"--img-size: value {img_size} is not allowed; the checkpoint's model takes "
                               f"{trained['img_size']} px images (leave --img-size out)")
        setting = _density(ckpt["config"]["prune"], density, dense)
        loader, bundle = _batches(data or trained["name"], trained["img_size"], batch_size, seed)
        if bundle is not None:
            check_fits(net, bundle, "--data")
        set_density(net, setting)
        print(f"{checkpoint}: {'dense' if setting is None else f'{setting[0]}={setting[1]:g}'} "
              f"(pruning after block {ckpt['config']['prune']['layer']})")
    else:
        loader, bundle = _batches(data or "digits", img_size or _timm_size(model), batch_size, seed)
        net = _timm_model(model, bundle.num_classes if bundle is not None else None, img_size, pretrained)
    net.eval()
    report = evaluate(net, config, loader, max_batches=batches, calib_batches=calib_batches,
                      calib_method=calib_method, smooth=smooth, progress=progress, exact=exact, skip=tuple(skip),
                      **({} if ops is None else {"ops": ops}))
    print(report.table())
    if json_path:
        report.to_json(json_path)
        print(f"wrote {json_path}")
    return 0


def _density(trained: dict, density: tuple[str | None, float | None], dense: bool) -> tuple | None:
    """The (rule, value) to run a checkpoint at, None for dense; parts left out come from ``trained``."""
    from vitaccel.prune import RULES
    from vitaccel.prune.config import value_problem

    if dense:
        if density != (None, None):
            raise EmulateError("--dense: cannot be combined with --rule or --value")
        return None
    rule, value = density
    if rule is not None and rule not in RULES:
        raise EmulateError(f"--rule: value {rule!r} is not allowed; choose one of {list(RULES)}")
    if value is None and rule not in (None, trained["rule"]):
        raise EmulateError(f"--value: required with --rule {rule} (the checkpoint was trained with {trained['rule']})")
    rule, value = rule or trained["rule"], trained["value"] if value is None else value
    problem = value_problem(rule, value)
    if problem:
        raise EmulateError(f"--value: value {value!r} is not allowed; {problem}")
    return rule, value
