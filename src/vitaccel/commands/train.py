"""``vitaccel train``: a dense ViT teacher or a SaiT token-pruning student (also under torchrun)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` parser."""
    p = sub.add_parser("train", help="train a dense ViT teacher or a SaiT token-pruning student "
                                     "(also under torchrun)")
    p.add_argument("--config", required=True, help="YAML config file, or a bundled name (digits-teacher, ...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (dotted for data.*, prune.*)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue out_dir/last.pt exactly")
    again.add_argument("--overwrite", action="store_true", help="start again in an out_dir that holds a run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train per the config; returns 0."""
    from vitaccel.train import load_config, train

    train(load_config(args.config, args.overrides), resume=args.resume, overwrite=args.overwrite)
    return 0
