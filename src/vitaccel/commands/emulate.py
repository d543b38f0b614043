"""``vitaccel emulate``: a model (timm name or vitaccel checkpoint) and a data set on one accelerator config.

Builds the model and the validation batches, then calls ``evaluate``; prints the report and
optionally writes it as JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from vitaccel.errors import ConfigError, EmulateError

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

RANDOM = "random"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``emulate`` parser."""
    p = sub.add_parser("emulate", help="run a model on an emulated accelerator: per-op and output error, accuracy")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="timm model name (random weights unless --pretrained)")
    src.add_argument("--checkpoint", help="vitaccel training checkpoint (.pt)")
    p.add_argument("--accelerator", required=True, help="preset name (fp32, fp13, ...) or YAML file")
    p.add_argument("--data", help="digits | synthetic | cifar10 | cifar100 | random | image folder "
                                  "(default: the checkpoint's data set, else digits)")
    p.add_argument("--batches", type=int, default=10, help="batches to emulate")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--img-size", type=int, help="image size (default: the model's)")
    p.add_argument("--fast", action="store_true", help="exact=False: native accumulation order, much faster")
    p.add_argument("--calib-batches", type=int, default=4,
                   help="calibration batches (integer datapaths), taken before and held apart from the evaluated ones")
    p.add_argument("--calib-method", choices=("max", "percentile", "mse"), default="max",
                   help="activation range per product (per_tensor integer datapaths)")
    p.add_argument("--smooth", type=float, metavar="ALPHA",
                   help="SmoothQuant migration strength in [0, 1] for products with weights (integer datapaths)")
    p.add_argument("--ops", metavar="KINDS", help="comma-separated op kinds that run emulated (default: all of "
                                                  "linear,conv2d,matmul,attention; e.g. linear: linear layers only)")
    p.add_argument("--skip", action="append", default=[], metavar="PATTERN",
                   help="run ops whose name matches this fnmatch pattern native (repeatable)")
    p.add_argument("--json", dest="json_path", help="also write the report as JSON here")
    p.add_argument("--pretrained", action="store_true", help="timm pretrained weights (needs them cached)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Emulate per the arguments; returns 0."""
    return run_emulate(model=args.model, checkpoint=args.checkpoint, accelerator=args.accelerator,
                       data=args.data, batches=args.batches, batch_size=args.batch_size,
                       img_size=args.img_size, exact=not args.fast, calib_batches=args.calib_batches,
                       calib_method=args.calib_method, skip=args.skip, json_path=args.json_path,
                       pretrained=args.pretrained, seed=args.seed, smooth=args.smooth,
                       ops=None if args.ops is None else tuple(k for k in args.ops.split(",") if k))


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


def _batches(data: str, img_size: int, batch_size: int, seed: int) -> tuple[Iterable, int | None]:
    """Validation batches of ``data`` and its class count (None for random inputs)."""
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
    return DataLoader(bundle.val, batch_size=batch_size, shuffle=False), bundle.num_classes


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
                seed: int, progress: bool = True, smooth: float | None = None,
                ops: tuple[str, ...] | None = None) -> int:
    """The ``vitaccel emulate`` command; returns the exit status."""
    from vitaccel.configtools import check_writable
    from vitaccel.emulate.backend import resolve_config
    from vitaccel.emulate.evaluation import evaluate

    if (model is None) == (checkpoint is None):
        raise EmulateError("give exactly one of --model NAME and --checkpoint PATH")
    for flag, value in (("--batches", batches), ("--batch-size", batch_size), ("--calib-batches", calib_batches)):
        if value < 1:
            raise EmulateError(f"{flag}: {value} is not allowed; it must be >= 1")
    if pretrained and checkpoint is not None:
        raise EmulateError("--pretrained: only with --model (a checkpoint holds its own weights)")
    try:
        config = resolve_config(accelerator)  # a bad config fails before any model is built
    except ConfigError as exc:
        raise EmulateError(f"--accelerator: {exc}") from None
    if json_path:
        check_writable(Path(json_path).parent, "--json")
    if checkpoint is not None:
        from vitaccel.train.build import model_from_checkpoint
        net, ckpt = model_from_checkpoint(checkpoint, pruned=False)
        trained = ckpt["config"]["data"]
        if img_size is not None and img_size != trained["img_size"]:
            raise EmulateError(f"--img-size: value {img_size} is not allowed; the checkpoint's model takes "
                               f"{trained['img_size']} px images (leave --img-size out)")
        loader, _ = _batches(data or trained["name"], trained["img_size"], batch_size, seed)
    else:
        loader, num_classes = _batches(data or "digits", img_size or _timm_size(model), batch_size, seed)
        net = _timm_model(model, num_classes, img_size, pretrained)
    net.eval()
    report = evaluate(net, config, loader, max_batches=batches, calib_batches=calib_batches,
                      calib_method=calib_method, smooth=smooth, progress=progress, exact=exact, skip=tuple(skip),
                      **({} if ops is None else {"ops": ops}))
    print(report.table())
    if json_path:
        report.to_json(json_path)
        print(f"report written to {json_path}")
    return 0
