"""``vitaccel train``: a dense ViT teacher or a SaiT token-pruning student (also under torchrun)."""

from __future__ import annotations

import argparse
import os

from vitaccel.commands._shared import progress
from vitaccel.configtools import Flag, add_config_arguments, flag_overrides, flags_named

FLAGS = (Flag("--out", "out_dir"), Flag("--seed", "seed"), Flag("--batch-size", "batch_size"),
         Flag("--device", "device"))


def _config() -> type:
    from vitaccel.train import TrainConfig

    return TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` parser."""
    p = sub.add_parser("train", help="train a dense ViT teacher or a SaiT token-pruning student "
                                     "(also under torchrun)",
                       description="Train a dense ViT (recipe: dense) or a SaiT student that prunes its tokens "
                                   "(recipe: sait) from a recipe plus key=value overrides; writes "
                                   "metrics.jsonl, last.pt and best.pt to out_dir.")
    add_config_arguments(p, _config, FLAGS, config_help="YAML recipe file, or a bundled name: digits-teacher, "
                                                        "digits-sait (required)", metavar="FILE|NAME")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue out_dir/last.pt exactly")
    again.add_argument("--overwrite", action="store_true", help="start again in an out_dir that holds a run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train per the config; returns 0."""
    from vitaccel.configtools import ConfigError
    from vitaccel.train import load_config, train

    if args.config is None:
        raise ConfigError("--config: required; give a YAML recipe or a bundled name (digits-teacher, digits-sait)")
    overrides, named = flag_overrides(args)
    with flags_named(named):
        # no progress bars in a log, unless the command line asks for them
        cfg = load_config(args.config, [*([] if progress() else ["progress=false"]), *overrides])
    train(cfg, resume=args.resume, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") == "0":
        print(f"wrote {cfg.out_dir}/ (metrics.jsonl, last.pt, best.pt)")
    return 0
