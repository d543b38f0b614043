"""SaiT ablation on synthetic scenes: token distillation and alternating dense/sparse epochs.

One dense teacher, then three students trained from scratch with the teacher's recipe and number
of epochs, all measured in this run on the same validation scenes:

- ``sait``: alternating dense (odd) / pruned (even) epochs, with token distillation;
- ``no distill``: alternating, ``lambda_distill = 0``;
- ``always sparse``: token distillation, every epoch pruned.

Reported per model: dense and pruned top-1, patch tokens kept, MACs relative to dense, the
recall of object patches (the share of the patches that hold the object, from the scenes'
ground-truth masks, that the model keeps) at the trained density and at one fixed token budget
for all models, and the share of the TIS that falls on object patches. Claims checked:
distillation raises object recall; alternating beats always-sparse on dense accuracy. The whole
experiment is repeated for each training seed (``--seeds``) and reported as mean ± standard
deviation over seeds, with the per-seed figures below the table.

    python benchmarks/ablation_synthetic.py                 # seeds 0 1 2: about 15 CPU-minutes
    python benchmarks/ablation_synthetic.py --quick --seeds 0   # smaller and shorter: a smoke test
    python benchmarks/ablation_synthetic.py --reuse         # only the table, from an earlier run
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vitaccel.configtools import from_dict
from vitaccel.data import build_datasets
from vitaccel.train import TrainConfig, model_from_checkpoint, train, val_loader
from vitaccel.train.validation import validate_at


@torch.no_grad()
def object_scores(model: torch.nn.Module, loader, patch_masks: torch.Tensor) -> dict[str, float]:
    """At the model's current density: recall of object patches (share of them kept) and the
    share of the TIS on object patches (independent of the density), means over images (%)."""
    model.eval()
    recall, mass, start = [], [], 0
    for x, _ in loader:
        model(x)
        truth = patch_masks[start:start + len(x)]
        start += len(x)
        recall.append((model.pruning.keep & truth).sum(1).float() / truth.sum(1).clamp(min=1).float())
        mass.append((model.pruning.tis * truth).sum(1))
    return {"recall": torch.cat(recall).mean().item() * 100, "tis_mass": torch.cat(mass).mean().item() * 100}


def measure(checkpoints: dict[str, Path], loader, truth: torch.Tensor, prune_cfg: dict,
            budget: tuple[str, float]) -> dict[str, dict[str, float]]:
    """The table's figures for each checkpoint (the keys of ``COLUMNS``)."""
    out = {}
    for name, path in checkpoints.items():
        model, _ = model_from_checkpoint(path)
        dense = validate_at(model, loader, None)
        pruned = validate_at(model, loader, (prune_cfg["rule"], prune_cfg["value"]))
        at_rule = object_scores(model, loader, truth)
        model.pruning.configure(rule=budget[0], value=budget[1])
        at_budget = object_scores(model, loader, truth)
        out[name] = {"dense": dense["acc"], "pruned": pruned["acc"], "kept": pruned["kept"],
                     "macs": pruned["macs"] / dense["macs"], "recall": at_rule["recall"],
                     "recall_budget": at_budget["recall"], "tis": at_rule["tis_mass"]}
    return out


COLUMNS = {"dense": "dense top-1 %", "pruned": "pruned top-1 %", "kept": "patches kept",
           "macs": "MACs vs dense", "recall": "object recall (pruned) %", "recall_budget": "object recall (topk 0.2) %",
           "tis": "TIS on object %"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ablation-synthetic")
    parser.add_argument("--quick", action="store_true", help="1000 scenes, 4 epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds (initialisation, augmentation, order); the scenes stay the same")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--reuse", action="store_true", help="measure the checkpoints already in --out")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    # An even number of epochs: alternating students end on a pruned epoch, with as many dense as
    # pruned epochs, so the comparison with always-sparse does not favour them.
    scenes, epochs = (1000, 4) if args.quick else (3000, 10)
    base = {"model": "vit_nano_patch4_32", "progress": False, "batch_size": 64,
            "data": {"name": "synthetic", "num_samples": scenes, "img_size": 32},
            "prune": {"layer": 2, "rule": "mass", "value": 0.5}}
    variants = {
        "sait (alternate + distill)": {},
        "no distill (alternate)": {"lambda_distill": 0.0},
        "always sparse (+ distill)": {"schedule": "sparse"},
    }
    data = build_datasets(from_dict(TrainConfig, base).data)
    loader = val_loader(data.val, 256)
    truth = data.val.patch_masks(4)
    budget = ("topk", 0.2)  # the same number of patches for every model: 13 of 64
    results = []
    for seed in args.seeds:
        out = Path(args.out) / f"seed{seed}"
        teacher = out / "teacher" / "last.pt"
        recipe = {**base, "epochs": epochs, "lr": 0.001, "seed": seed}
        if not args.reuse:
            train(from_dict(TrainConfig, {**recipe, "recipe": "dense", "out_dir": str(teacher.parent)}),
                  overwrite=True)
        checkpoints = {"teacher (dense, no pruning training)": teacher}
        for i, (name, change) in enumerate(variants.items()):
            folder = out / f"student{i}"
            if not args.reuse:
                train(from_dict(TrainConfig, {**recipe, "recipe": "sait", "teacher": str(teacher), **change,
                                              "out_dir": str(folder)}), overwrite=True)
            checkpoints[name] = folder / "last.pt"
        results.append(measure(checkpoints, loader, truth, base["prune"], budget))

    print(f"\nsynthetic scenes: {len(data.train)} train / {len(data.val)} val, {base['model']}, "
          f"pruning at layer {base['prune']['layer']} with {base['prune']['rule']}={base['prune']['value']}; "
          f"object patches per image {truth.sum(1).float().mean():.1f} of {truth.shape[1]}; "
          f"mean ± standard deviation over seeds {args.seeds}\n")
    print("| model | " + " | ".join(COLUMNS.values()) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for name in results[0]:
        cells = []
        for key in COLUMNS:
            values = torch.tensor([r[name][key] for r in results], dtype=torch.float64)
            spread = values.std().item() if len(values) > 1 else 0.0
            digits = 3 if key == "macs" else 1
            cells.append(f"{values.mean().item():.{digits}f} ± {spread:.{digits}f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name in results[0]:
        print(f"{name}: per seed " + "; ".join(
            ", ".join(f"{k} {r[name][k]:.2f}" for k in ("dense", "pruned", "recall_budget", "tis")) for r in results))


if __name__ == "__main__":
    main()
