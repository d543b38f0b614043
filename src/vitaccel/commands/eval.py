"""``vitaccel eval``: a trained checkpoint on its validation set, at one density or a sweep of them."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitaccel.commands._shared import check_fits, device_field, json_field, progress, write_json
from vitaccel.configtools import Flag, add_config_arguments, config_from_args, field
from vitaccel.errors import ConfigError

if TYPE_CHECKING:
    import torch.nn as nn
    from torch.utils.data import DataLoader


@dataclass
class EvalConfig:
    """The keys of ``vitaccel eval``."""

    checkpoint: str = field(help="vitaccel training checkpoint (last.pt, best.pt)")
    data: dict[str, Any] = field(default_factory=dict, help="overrides of the checkpoint's data section, "
                                                           "e.g. data.root=/data/imagenet")
    dense: bool = field(False, help="dense only")
    rule: str | None = field(None, help="topk | value | mass (default: the trained rule)")
    value: float | None = field(None, help="the rule's parameter (default: the trained value)")
    layer: int | None = field(None, help="pruning layer P (default: the trained one)")
    sweep: bool = field(False, help="many densities: CSV and accuracy-vs-MACs PNG")
    values: list[float] | None = field(None, help="sweep: the rule's parameters, e.g. 0.9,0.7,0.5")
    out: str | None = field(None, help="sweep: output folder (default: sweep-RULE next to the checkpoint)")
    batch_size: int = field(256, help="images per batch")
    device: str = device_field()
    json: str | None = json_field()


FLAGS = (Flag("--checkpoint", "checkpoint"), Flag("--dense", "dense", switch=True), Flag("--rule", "rule"),
         Flag("--value", "value"), Flag("--layer", "layer"), Flag("--sweep", "sweep", switch=True),
         Flag("--values", "values"), Flag("--out", "out"), Flag("--batch-size", "batch_size"),
         Flag("--device", "device"), Flag("--json", "json"))


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``eval`` parser."""
    p = sub.add_parser("eval", help="top-1, tokens kept and MACs per image of a checkpoint, at one or many densities",
                       description="Top-1, patch tokens kept and MACs per image of a trained checkpoint on its "
                                   "validation set: dense and its trained density, one density, or a sweep.")
    add_config_arguments(p, lambda: EvalConfig, FLAGS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate per the arguments; returns 0."""
    cfg = config_from_args(EvalConfig, args)
    rows = run_eval(cfg.checkpoint, rule=cfg.rule, value=cfg.value, dense=cfg.dense, do_sweep=cfg.sweep,
                    values=cfg.values, out=cfg.out, batch_size=cfg.batch_size,
                    data_overrides=[f"{k}={json.dumps(v)}" for k, v in cfg.data.items()], device=cfg.device,
                    layer=cfg.layer, progress=progress(), json_path=cfg.json)
    return 0 if rows else 1


def _row_text(r: dict) -> str:
    return (f"{r['setting']:>12}  top-1 {r['acc']:6.2f}%  patches kept {r['kept']:6.1f} ± {r['kept_std']:4.1f}  "
            f"MACs/image {r['macs'] / 1e6:8.2f}M ± {r['macs_std'] / 1e6:5.2f}M "
            f"({100 * r['macs_ratio']:5.1f}% of dense)")


def _settings(trained: dict, rule: str | None, value: float | None, dense: bool) -> list[tuple | None]:
    """(rule, value) pairs to evaluate, None meaning dense."""
    if dense:
        return [None]
    if rule is None and value is None:
        return [None, (trained["rule"], trained["value"])]
    if value is None and rule != trained["rule"]:
        raise ConfigError(f"--value: required with --rule {rule} (the checkpoint was trained with {trained['rule']})")
    return [(rule or trained["rule"], trained["value"] if value is None else value)]


def _check_arguments(rule: str | None, value: float | None, dense: bool, do_sweep: bool,
                     values: list[float] | None, batch_size: int) -> None:
    from vitaccel.prune import RULES

    if dense and (do_sweep or rule is not None or value is not None):
        raise ConfigError("--dense: cannot be combined with --sweep, --rule or --value")
    if rule is not None and rule not in RULES:
        raise ConfigError(f"--rule: value {rule!r} is not allowed; choose one of {list(RULES)}")
    if values and not do_sweep:
        raise ConfigError("--values: only used with --sweep")
    if batch_size < 1:
        raise ConfigError(f"--batch-size: value {batch_size} is not allowed; it must be >= 1")


def _check_values(rule: str, value: float | None, values: list[float] | None) -> None:
    """``--value``/``--values`` must suit ``rule`` (the given one, or the trained one)."""
    from vitaccel.prune.config import value_problem

    for flag, v in [("--value", value)] + [("--values", v) for v in values or ()]:
        problem = None if v is None else value_problem(rule, v)
        if problem:
            raise ConfigError(f"{flag}: value {v!r} is not allowed; {problem}")


def run_eval(checkpoint: str, rule: str | None = None, value: float | None = None, dense: bool = False,
             do_sweep: bool = False, values: list[float] | None = None, out: str | None = None,
             batch_size: int = 256, data_overrides: list[str] = (), device: str = "auto",
             layer: int | None = None, progress: bool = True, json_path: str | None = None) -> list[dict]:
    """Evaluate ``checkpoint`` and print one line per density; returns the rows.

    Default: dense and the density it was trained for. ``dense``: dense only. ``rule``/``value``:
    that density (a missing one comes from the checkpoint). ``do_sweep``: dense plus ``rule`` at
    each of ``values`` (defaults per rule), written to ``out/sweep.csv`` and ``out/sweep.png``.
    ``layer``: prune after another block than the one it was trained for. ``json_path``: also
    write the rows there.
    """
    import torch

    from vitaccel.configtools import check_writable
    from vitaccel.data import build_datasets
    from vitaccel.train.build import checkpoint_data, model_from_checkpoint, patch_checked
    from vitaccel.train.densities import DEFAULT_VALUES, sweep, write_csv
    from vitaccel.train.distributed import Dist, use_cuda
    from vitaccel.train.validation import val_loader, validate_at
    from vitaccel.viz.figures import accuracy_vs_macs

    _check_arguments(rule, value, dense, do_sweep, values, batch_size)
    cuda = use_cuda(device, "--device")
    model, ckpt = model_from_checkpoint(checkpoint, pruned=False)
    trained = {**ckpt["config"]["prune"], **({"layer": layer} if layer is not None else {})}
    patch_checked(model, trained, f"--layer: value {layer} is not allowed" if layer is not None
                  else f"checkpoint {checkpoint!r}: its pruning settings do not fit its model")
    data_cfg = checkpoint_data(ckpt, data_overrides, "data override")
    if json_path:
        check_writable(Path(json_path).parent, "--json")
    explicit_rule, rule = rule, rule or trained["rule"]
    _check_values(rule, value, values)
    folder = None
    if do_sweep:
        folder = check_writable(Path(out) if out else Path(checkpoint).parent / f"sweep-{rule}",
                              "--out" if out else "--checkpoint (its folder, for the sweep)")
    dist = Dist(0, 1, torch.device("cuda" if cuda else "cpu"))
    model.to(dist.device)
    bundle = build_datasets(data_cfg)
    check_fits(model, bundle, "data")
    loader = val_loader(bundle.val, batch_size, dist)
    if do_sweep:
        rows = sweep(model, loader, rule, tuple(values or DEFAULT_VALUES[rule]), dist, progress=progress)
    else:
        rows = [validate_at(model, loader, setting, dist, progress=progress)
                for setting in _settings(trained, explicit_rule, value, dense)]
        reference = _dense_macs(model, loader)
        for r in rows:
            r["macs_ratio"] = r["macs"] / reference
    print(f"{checkpoint}: {data_cfg.name} val ({rows[0]['images']} images), "
          f"pruning layer {trained['layer']}")
    for r in rows:
        print(_row_text(r))
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(rows, folder / "sweep.csv")
        accuracy_vs_macs([{"density": r["setting"], "macs": r["macs"], "top1": r["acc"], "macs_ratio": r["macs_ratio"]}
                          for r in rows], folder / "sweep.png",
                         f"{Path(checkpoint).name}: {ckpt['config']['model']} on {data_cfg.name}, "
                         f"pruning at layer {trained['layer']}")
        print(f"wrote {folder / 'sweep.csv'} and {folder / 'sweep.png'}")
    if json_path:
        print(f"wrote {write_json(json_path, rows)}")
    return rows


def _dense_macs(model: nn.Module, loader: DataLoader) -> float:
    """Dense MACs per image (the same for every image): one image, dense."""
    import torch

    x, _ = next(iter(loader))
    model.pruning.configure(dense=True)
    with torch.no_grad():
        model(x[:1].to(next(model.parameters()).device))
    return float(model.pruning.stats["macs"][0])
