"""The ``vitaccel`` command: wires the modules together, holds no logic of its own.

Each subcommand is one ``_cmd_*`` function registered in ``COMMANDS``; modules are imported
lazily so that ``vitaccel --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable


def _add_demo(sub: argparse._SubParsersAction) -> Callable:
    p = sub.add_parser("demo", help="the main job on bundled digits: train (cached), prune, emulate, cost, report")
    p.add_argument("--out", default="vitaccel-report", help="report folder (report.md, report.html, PNGs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", help="folder for trained checkpoints (default: ~/.cache/vitaccel/demo)")
    p.add_argument("--quick", action="store_true", help="2 training epochs, fewer images: a smoke run")

    def run(args: argparse.Namespace) -> int:
        from vitaccel.demo import run_demo
        return run_demo(out=args.out, seed=args.seed, cache=args.cache, quick=args.quick)
    return run


def _add_report(sub: argparse._SubParsersAction) -> Callable:
    p = sub.add_parser("report", help="the demo's report for any trained checkpoint and data set")
    p.add_argument("--checkpoint", required=True, help="vitaccel training checkpoint (.pt) of a SaiT student")
    p.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                   help="override the checkpoint's data section, e.g. --data name=synthetic (repeatable)")
    p.add_argument("--accelerators", default="fp32,fp13,int8,int8-lot4,int8-lot4-psum",
                   help="comma-separated presets or YAML files")
    p.add_argument("--densities", default="0.97,0.9,0.8,0.7", help="comma-separated values of the rule")
    p.add_argument("--rule", default="mass", choices=("mass", "topk", "value"))
    p.add_argument("--max-images", type=int, default=512)
    p.add_argument("--fast", action="store_true", help="exact=False for float presets (native accumulation order)")
    p.add_argument("--energy-table", help="YAML of per-operation energies (default: 45 nm, Horowitz ISSCC 2014)")
    p.add_argument("--out", default="vitaccel-report")

    def run(args: argparse.Namespace) -> int:
        from vitaccel.demo import run_report
        densities = [(args.rule, float(v)) for v in args.densities.split(",") if v]
        return run_report(args.checkpoint, args.out, [a for a in args.accelerators.split(",") if a],
                          data=args.data, densities=densities, max_images=args.max_images, exact=not args.fast,
                          energy_table=args.energy_table)
    return run


def _add_emulate(sub: argparse._SubParsersAction) -> Callable:
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
    p.add_argument("--calib-batches", type=int, default=4, help="calibration batches (integer datapaths)")
    p.add_argument("--calib-method", choices=("max", "percentile"), default="max")
    p.add_argument("--skip", action="append", default=[], metavar="PATTERN",
                   help="run ops whose name matches this fnmatch pattern native (repeatable)")
    p.add_argument("--json", dest="json_path", help="also write the report as JSON here")
    p.add_argument("--pretrained", action="store_true", help="timm pretrained weights (needs them cached)")
    p.add_argument("--seed", type=int, default=0)

    def run(args: argparse.Namespace) -> int:
        from vitaccel.emulate.command import run_emulate
        return run_emulate(model=args.model, checkpoint=args.checkpoint, accelerator=args.accelerator,
                           data=args.data, batches=args.batches, batch_size=args.batch_size,
                           img_size=args.img_size, exact=not args.fast, calib_batches=args.calib_batches,
                           calib_method=args.calib_method, skip=args.skip, json_path=args.json_path,
                           pretrained=args.pretrained, seed=args.seed)
    return run


COMMANDS: list[Callable[[argparse._SubParsersAction], Callable]] = [_add_demo, _add_report]
COMMANDS.append(_add_emulate)


def _add_train(sub: argparse._SubParsersAction) -> Callable:
    p = sub.add_parser("train", help="train a dense ViT teacher or a SaiT token-pruning student "
                                     "(also under torchrun)")
    p.add_argument("--config", required=True, help="YAML config file, or a bundled name (digits-teacher, ...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (dotted for data.*)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue out_dir/last.pt exactly")
    again.add_argument("--overwrite", action="store_true", help="start again in an out_dir that holds a run")

    def run(args: argparse.Namespace) -> int:
        from vitaccel.train import load_config, train
        train(load_config(args.config, args.overrides), resume=args.resume, overwrite=args.overwrite)
        return 0
    return run


COMMANDS.append(_add_train)


def _add_eval(sub: argparse._SubParsersAction) -> Callable:
    p = sub.add_parser("eval", help="top-1, tokens kept and MACs per image of a checkpoint, at one or many densities")
    p.add_argument("--checkpoint", required=True, help="vitaccel training checkpoint (last.pt, best.pt)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dense", action="store_true", help="dense only")
    mode.add_argument("--sweep", action="store_true", help="many densities: CSV and accuracy-vs-MACs PNG")
    p.add_argument("--rule", help="topk | value | mass (default: the trained rule)")
    p.add_argument("--value", type=float, help="the rule's parameter (default: the trained value)")
    p.add_argument("--values", type=float, nargs="+", help="--sweep: the rule's parameters")
    p.add_argument("--layer", type=int, help="pruning layer P (default: the trained one)")
    p.add_argument("--out", help="--sweep: output folder (default: next to the checkpoint)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("data_overrides", nargs="*", metavar="key=value",
                   help="data config overrides, e.g. root=/data/imagenet")

    def run(args: argparse.Namespace) -> int:
        from vitaccel.train.evalcmd import run_eval
        run_eval(args.checkpoint, rule=args.rule, value=args.value, dense=args.dense, do_sweep=args.sweep,
                 values=args.values, out=args.out, batch_size=args.batch_size,
                 data_overrides=args.data_overrides, device=args.device, layer=args.layer)
        return 0
    return run


COMMANDS.append(_add_eval)


def _add_hw(sub: argparse._SubParsersAction) -> Callable:
    """TEMPORARY hook (branch hw): the new cli registers vitaccel.commands.hw itself."""
    from vitaccel.commands import hw
    from vitaccel.errors import UserError
    hw.register(sub)

    def run(args: argparse.Namespace) -> int:
        try:
            return args.func(args)
        except UserError as exc:
            print(f"vitaccel hw: error: {exc}", file=sys.stderr)
            return 2
    return run


COMMANDS.append(_add_hw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vitaccel", description=__doc__.splitlines()[0])
    from vitaccel import __version__
    parser.add_argument("--version", action="version", version=f"vitaccel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    runners = {}
    for add in COMMANDS:
        runner = add(sub)
        runners[list(sub.choices)[-1]] = runner
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return runners[args.command](args) or 0
    except (ValueError, TypeError, FileNotFoundError) as exc:
        # Bad input from the user: one clear line, no traceback.
        from vitaccel.configtools import ConfigError
        if isinstance(exc, (ConfigError, FileNotFoundError)) or getattr(exc, "user_error", False):
            print(f"vitaccel {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
