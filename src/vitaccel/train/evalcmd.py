"""``vitaccel eval``: a trained checkpoint on its validation set, at one density or a sweep of them."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from vitaccel.configtools import ConfigError, apply_overrides, from_dict
from vitaccel.data import DataConfig, build_datasets
from vitaccel.prune import RULES, patch
from vitaccel.train.build import model_from_checkpoint
from vitaccel.train.distributed import Dist
from vitaccel.train.evaluate import evaluate_at, val_loader
from vitaccel.train.sweep import DEFAULT_VALUES, plot_sweep, sweep, write_csv


def _row_text(r: dict) -> str:
    return (f"{r['setting']:>12}  top-1 {r['acc']:6.2f}%  patches kept {r['kept']:6.1f} ± {r['kept_std']:4.1f}  "
            f"MACs/image {r['macs'] / 1e6:8.2f}M ± {r['macs_std'] / 1e6:5.2f}M ({100 * r['macs_ratio']:5.1f}% of dense)")


def _settings(trained: dict, rule: str | None, value: float | None, dense: bool) -> list[tuple | None]:
    """(rule, value) pairs to evaluate, None meaning dense."""
    if dense:
        return [None]
    if rule is None and value is None:
        return [None, (trained["rule"], trained["value"])]
    if value is None and rule != trained["rule"]:
        raise ConfigError(f"--value: required with --rule {rule} (the checkpoint was trained with {trained['rule']})")
    return [(rule or trained["rule"], trained["value"] if value is None else value)]


@torch.no_grad()
def _dense_macs(model: torch.nn.Module, loader: DataLoader) -> float:
    """Dense MACs per image (the same for every image): one image, dense."""
    x, _ = next(iter(loader))
    model.pruning.configure(dense=True)
    model(x[:1].to(next(model.parameters()).device))
    return float(model.pruning.stats["macs"][0])


def run_eval(checkpoint: str, rule: str | None = None, value: float | None = None, dense: bool = False,
             do_sweep: bool = False, values: list[float] | None = None, out: str | None = None,
             batch_size: int = 256, data_overrides: list[str] = (), device: str = "auto",
             layer: int | None = None, progress: bool = True) -> list[dict]:
    """Evaluate ``checkpoint`` and print one line per density; returns the rows.

    Default: dense and the density it was trained for. ``dense``: dense only. ``rule``/``value``:
    that density (a missing one comes from the checkpoint). ``do_sweep``: dense plus ``rule`` at
    each of ``values`` (defaults per rule), written to ``out/sweep.csv`` and ``out/sweep.png``.
    ``layer``: prune after another block than the one it was trained for.
    """
    if dense and (do_sweep or rule is not None or value is not None):
        raise ConfigError("--dense: cannot be combined with --sweep, --rule or --value")
    if rule is not None and rule not in RULES:
        raise ConfigError(f"--rule: value {rule!r} is not allowed; choose one of {list(RULES)}")
    if values and not do_sweep:
        raise ConfigError("--values: only used with --sweep")
    model, ckpt = model_from_checkpoint(checkpoint, pruned=False)
    trained = {**ckpt["prune"], **({"layer": layer} if layer is not None else {})}
    try:
        patch(model, **trained)
    except ValueError as exc:
        raise ConfigError(f"--layer: value {layer!r} is not allowed; {exc}") from exc
    data_cfg = from_dict(DataConfig, apply_overrides(ckpt["config"]["data"], list(data_overrides)), "data.")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dist = Dist(0, 1, torch.device("cuda" if use_cuda else "cpu"))
    model.to(dist.device)
    loader = val_loader(build_datasets(data_cfg).val, batch_size, dist)
    explicit_rule, rule = rule, rule or trained["rule"]
    if do_sweep:
        rows = sweep(model, loader, rule, tuple(values or DEFAULT_VALUES[rule]), dist, progress=progress)
    else:
        rows = [evaluate_at(model, loader, setting, dist, progress=progress)
                for setting in _settings(trained, explicit_rule, value, dense)]
        reference = _dense_macs(model, loader)
        for r in rows:
            r["macs_ratio"] = r["macs"] / reference
    print(f"{checkpoint}: {data_cfg.name} val ({rows[0]['images']} images), "
          f"pruning layer {trained['layer']}")
    for r in rows:
        print(_row_text(r))
    if do_sweep:
        folder = Path(out) if out else Path(checkpoint).parent / f"sweep-{rule}"
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(rows, folder / "sweep.csv")
        plot_sweep(rows, folder / "sweep.png", f"{Path(checkpoint).name}: {ckpt['model_args']['name']} on "
                   f"{data_cfg.name}, pruning at layer {trained['layer']}")
        print(f"wrote {folder / 'sweep.csv'} and {folder / 'sweep.png'}")
    return rows
