"""Top-1 on all 1797 digits at matched MACs: vitaccel's rules and placements against ToMe- and
EViT-style baselines, 5-fold cross-validation (every image validated exactly once).

For each fold the digits teacher (``digits-teacher`` recipe) and three SaiT students
(``digits-sait`` recipe) are trained on the other four folds: pruning at layer 1 with
``prune.placement`` block or attention (mass 0.75, the recipe's own), and one trained for three
stages at layers 1, 3, 5 inside the block (topk 0.7 at each). Every method then runs on every model
at 75 / 60 / 50 / 40 % of the dense MACs, in every stage layout of ``LAYOUTS``:

- ``1``: one stage at layer 1 (block or attention placement);
- ``1-3-5``: stages at layers 1, 3, 5, attention placement, one rule value shared by the stages
  (topk only);
- ``1-3-5+6``: the same and a last stage inside block 6 at the rule's most aggressive value
  (``LAST``; topk and mass): block 6's MLP then runs on CLS, one patch and the package only. With CLS pooling the
  other tokens' last MLP is dead work, so this stage leaves the logits unchanged and only drops
  MACs (ToMe-style also merges before block 6's MLP).

The parameter that meets each level (rule value, ToMe's r, EViT's keep rate) is chosen on the
fold's *training* images (un-augmented): the setting whose mean MACs is the largest at or below
the level (for several stages measured by running the model on ``CALIB`` training images).

One more method, ``vitaccel topk (attention, 1-3-5+6, per stage)``, gives the stages at 1, 3, 5
their own keep rates along a schedule ``a * r**s`` (stage s = 0, 1, 2, at most 1; the CLS-only
stage at 6 as above), one per ratio ``r`` of ``RATIOS`` (``r = 1`` is the shared value), each with
the largest ``a = k / 64`` whose MACs (the same for every image under topk, counted exactly) are at
or below the level. Of these few settings it takes the one most faithful to the dense model on
all the fold's training images: the lowest mean KL(dense softmax || pruned softmax), a
label-free criterion (training accuracy is near 100 %). Few candidates scored on many images:
the lowest KL of many noisy estimates would fit the images it is measured on (a grid of ~100-220
settings scored on ``CALIB`` images did worse on fold 0 and was dropped). On the 5 folds it is
below the shared value at 75 % on every SaiT student (README: "Accuracy at matched MACs").

For every method, top-1 is then counted over the validation fold and summed over folds; the MACs
in brackets (% of dense) are the mean over the validation images. The table is rewritten (``--out``/table.md)
after every fold, so a partial run still reports what it has.

Baselines (vitaccel's own reimplementations, training-free, on the same weights):

- ``ToMe-style``: bipartite soft matching (Bolya et al.) inside every block between attention
  and MLP, ``r`` tokens merged per block, keys as the similarity, size-weighted (proportional)
  attention and size-weighted averages; CLS never merged.
- ``EViT-style``: CLS-attention top-k at block 1 with the inattentive tokens fused into one
  token (their attention-weighted mean), pruning inside the block before its MLP (Liang et al.).

    python benchmarks/prune_accuracy.py              # 5 folds, full recipes (long: hours on 2 cores)
    python benchmarks/prune_accuracy.py --quick      # a smoke test: one fold, tiny training
    python benchmarks/prune_accuracy.py --only 0 1 2 & python benchmarks/prune_accuracy.py --only 3 4
                                                     # two processes; rerun without --only: the table
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

import torch
import torch.nn as nn

import vitaccel.prune as prune
from vitaccel.configtools import apply_overrides, from_dict, load_yaml
from vitaccel.data import DataBundle, TensorImageDataset
from vitaccel.data.digits import load_digits_tensors
from vitaccel.data.transforms import TENSOR_MEAN, TENSOR_STD, tensor_transform
from vitaccel.measure import count_macs
from vitaccel.prune._timm import embed
from vitaccel.prune.macs import image_macs
from vitaccel.prune.select import keep_mask
from vitaccel.train import TrainConfig
from vitaccel.train.build import model_from_checkpoint
from vitaccel.train.config import resolve_config_path
from vitaccel.train.loop import train

LEVELS = (0.75, 0.60, 0.50, 0.40)
RULES = ("topk", "value", "mass")
PLACEMENTS = ("block", "attention")
LAYER = 1
# stage layout -> (pruning layers, placements run, rules run, whether the last stage is the CLS-only one);
# several stages run fewer rules: their settings are measured by running the model (value, the
# weakest rule at one stage, and mass without the CLS-only stage are left out for time)
LAYOUTS = {"1": ((LAYER,), PLACEMENTS, RULES, False),
           "1-3-5": ((1, 3, 5), ("attention",), ("topk",), False),
           "1-3-5+6": ((1, 3, 5, 6), ("attention",), ("topk", "mass"), True)}
LAST = {"topk": 1e-6, "mass": 1e-6, "value": 1e6}  # each rule's fewest kept tokens (topk/mass: 1, value: 0)
CALIB = 128  # training images the several-stage settings are measured on
RATIOS = (0.8, 0.9, 1.0, 1.1, 1.25)  # per-stage schedules: stage s of 1-3-5 keeps a * r**s
PER_STAGE = ("1-3-5+6", "topk")  # the layout and rule given per-stage values
# student name -> (out_dir name, digits-sait overrides)
STUDENTS = {"SaiT (block)": ("sait-block", ["prune.placement=block"]),
            "SaiT (attention)": ("sait-attention", ["prune.placement=attention"]),
            "SaiT (attention, 1-3-5)": ("sait-attention-135", ["prune.placement=attention", "prune.layers=[1,3,5]",
                                                                "prune.rule=topk", "prune.value=0.7"])}


def folds(n: int, k: int, seed: int = 0) -> list[torch.Tensor]:
    """``k`` disjoint validation index sets covering ``range(n)`` (a seeded permutation)."""
    return list(torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tensor_split(k))


def fold_data(images: torch.Tensor, labels: torch.Tensor, val: torch.Tensor, train_idx: torch.Tensor) -> DataBundle:
    """Train on ``train_idx`` (augmented), validate on ``val``."""
    full = TensorImageDataset(images, labels)
    return DataBundle(full.subset(train_idx, tensor_transform("digits", True, True)),
                      full.subset(val, tensor_transform("digits", False, False)),
                      [str(d) for d in range(10)], TENSOR_MEAN, TENSOR_STD)


def recipe(name: str, overrides: list[str]) -> TrainConfig:
    return from_dict(TrainConfig, apply_overrides(load_yaml(resolve_config_path(name)), overrides))


def trained(cfg: TrainConfig, data: DataBundle) -> Path:
    """``out_dir/last.pt`` of a finished run of ``cfg``: trained now unless a finished one is there
    (``out_dir/done`` is written only after the last epoch, so an interrupted run starts again)."""
    out = Path(cfg.out_dir)
    if not (out / "done").exists():
        train(cfg, overwrite=True, data=data)
        (out / "done").write_text("")
    return out / "last.pt"


# ----------------------------------------------------------------------------- baselines
def _attention(blk: nn.Module, x: torch.Tensor, size: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """timm ``Attention`` written out: output, keys (B, N, C) and the CLS row (B, N) of the weights."""
    attn = blk.attn
    b, n, c = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    if size is not None:
        logits = logits + size.log()[:, None, None, :, 0]
    weights = logits.softmax(dim=-1)
    out = attn.proj((weights @ v).transpose(1, 2).reshape(b, n, c))
    return out, k.transpose(1, 2).reshape(b, n, -1), weights[:, :, 0].mean(dim=1)


def _merge(x: torch.Tensor, size: torch.Tensor, metric: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ToMe's bipartite soft matching: merge the ``r`` most similar A tokens into B (CLS kept)."""
    metric = metric / metric.norm(dim=-1, keepdim=True)
    a, b = metric[:, ::2], metric[:, 1::2]
    scores = a @ b.transpose(-1, -2)
    scores[:, 0] = -math.inf  # CLS (index 0, in A) is never merged
    best, dst = scores.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)[..., None]
    src_idx, unm_idx = order[:, :r], order[:, r:]
    dst_idx = dst[..., None].gather(1, src_idx)
    xs, ss = x * size, size
    out = []
    for t in (xs, ss):
        ta, tb = t[:, ::2], t[:, 1::2]
        c = t.shape[-1]
        src = ta.gather(1, src_idx.expand(-1, -1, c))
        tb = tb.scatter_reduce(1, dst_idx.expand(-1, -1, c), src, reduce="sum")
        out.append(torch.cat([ta.gather(1, unm_idx.sort(dim=1).values.expand(-1, -1, c)), tb], dim=1))
    return out[0] / out[1], out[1]


def tome_forward(model: nn.Module, images: torch.Tensor, r: int) -> torch.Tensor:
    """ToMe-style forward of a timm ViT (CLS pooling): ``r`` merges per block, proportional attention."""
    x = embed(model, images)
    size = torch.ones_like(x[..., :1])
    for blk in model.blocks:
        out, keys, _ = _attention(blk, blk.norm1(x), size)
        x = x + blk.ls1(out)
        step = min(r, (x.shape[1] - 1) // 2)
        if step > 0:
            x, size = _merge(x, size, keys, step)
        x = x + blk.ls2(blk.mlp(blk.norm2(x)))
    return model.forward_head(model.norm(x))


def evit_forward(model: nn.Module, images: torch.Tensor, keep: float) -> torch.Tensor:
    """EViT-style forward: top-k by CLS attention at block ``LAYER``, fused token, inside the block."""
    x = embed(model, images)
    for i, blk in enumerate(model.blocks):
        out, _, cls_row = _attention(blk, blk.norm1(x), None)
        x = x + blk.ls1(out)
        if i == LAYER - 1:
            score = cls_row[:, 1:]
            k = prune.topk_count(keep, score.shape[1])
            idx = score.topk(k, dim=1).indices.sort(dim=1).values
            mask = torch.ones_like(score, dtype=torch.bool).scatter(1, idx, False)
            patches = x[:, 1:]
            kept = patches.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))
            w = (score * mask)[..., None]
            parts = [x[:, :1], kept]
            if k < score.shape[1]:
                parts.append((w * patches).sum(dim=1, keepdim=True) / w.sum(dim=1, keepdim=True))
            x = torch.cat(parts, dim=1)
        x = x + blk.ls2(blk.mlp(blk.norm2(x)))
    return model.forward_head(model.norm(x))


# ----------------------------------------------------------------------------- calibration
def search(mean_macs, rule: str, n: int, budget: float, steps: int) -> float:
    """The rule's parameter whose ``mean_macs`` is the largest <= ``budget`` (MACs grow with topk's
    and mass's parameter and fall with value's): topk over k / n, the others by ``steps`` bisections."""
    if rule == "topk":
        lo, hi = 1, n  # the largest k with mean_macs(k / n) <= budget (k = 1 when none fits)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if mean_macs(mid / n) <= budget else (lo, mid - 1)
        return lo / n
    lo, hi = (0.0, 1.0) if rule == "mass" else (0.0, float(n))
    for _ in range(steps):
        mid = (lo + hi) / 2
        fits = mean_macs(mid) <= budget
        lo, hi = ((mid, hi) if fits else (lo, mid)) if rule == "mass" else ((lo, mid) if fits else (mid, hi))
    return max(lo, 1e-9) if rule == "mass" else hi


def vitaccel_setting(model: nn.Module, tis: torch.Tensor, rule: str, placement: str, budget: float) -> float:
    """One stage at ``LAYER``: the parameter meeting ``budget`` on the training images' TIS (exact MACs)."""
    n = tis.shape[1]

    def mean_macs(value: float) -> float:
        keep = keep_mask(tis, rule, value)
        kept = keep.sum(dim=1)
        lengths = 1 + kept + (kept < n)
        return float(image_macs(model, n, (LAYER,), placement, [lengths], True).double().mean())

    return search(mean_macs, rule, n, budget, 40)


def stage_values(layout: str, rule: str, value: float) -> list[float]:
    """The per-stage values of ``layout`` for a shared ``value`` (the CLS-only last stage at ``LAST``)."""
    layers, _, _, last = LAYOUTS[layout]
    return [value] * (len(layers) - last) + [LAST[rule]] * last


def staged_setting(model: nn.Module, calib_x: torch.Tensor, layout: str, rule: str, placement: str,
                   budget: float, n: int) -> float:
    """Several stages: the shared parameter meeting ``budget``, MACs measured on ``calib_x``."""
    layers = list(LAYOUTS[layout][0])
    one = calib_x[:1] if rule == "topk" else calib_x  # topk's MACs are the same for every image
    cache: dict[float, float] = {}

    def mean_macs(value: float) -> float:
        if value not in cache:
            model.pruning.configure(dense=False, rule=rule, layers=layers, placement=placement,
                                    value=stage_values(layout, rule, value))
            model(one)
            cache[value] = float(model.pruning.stats["macs"].double().mean())
        return cache[value]

    return search(mean_macs, rule, n, budget, 10)


def topk_lengths(values: list[float], n: int, package: bool = True) -> list[int]:
    """Scored tokens after each topk stage (prefix excluded), from ``n`` patches: a stage keeps
    ``topk_count`` of what it scored, plus the package token when it pruned any (scored next)."""
    lengths = []
    for value in values:
        kept = min(prune.topk_count(value, n), n)
        n = kept + int(package and kept < n)
        lengths.append(n)
    return lengths


def schedule(a: float, r: float) -> list[float]:
    """``PER_STAGE``'s values: keep rate ``a * r**s`` at its stage s (at most 1), the CLS-only stage last."""
    layers, _, _, last = LAYOUTS[PER_STAGE[0]]
    return [min(1.0, a * r ** s) for s in range(len(layers) - last)] + [LAST[PER_STAGE[1]]] * last


def topk_macs(model: nn.Module, n: int, values: list[float]) -> float:
    """MACs per image of ``PER_STAGE``'s layout at topk ``values`` (attention placement, packaged), exactly."""
    layers = LAYOUTS[PER_STAGE[0]][0]
    lengths = [torch.tensor([model.num_prefix_tokens + k]) for k in topk_lengths(values, n)]
    return float(image_macs(model, n, layers, "attention", lengths, True)[0])


def schedule_options(model: nn.Module, n: int, budget: float) -> list[tuple[float, ...]]:
    """Per ratio of ``RATIOS`` the schedule with the largest ``a = k / n`` meeting ``budget`` (distinct ones)."""
    options = [tuple(schedule(search(lambda a, r=r: topk_macs(model, n, schedule(a, r)), "topk", n, budget, 0), r))
               for r in RATIOS]
    return list(dict.fromkeys(options))


def faithful_setting(model: nn.Module, images: torch.Tensor, dense_logp: torch.Tensor,
                     options: list[tuple[float, ...]]) -> tuple[float, ...]:
    """The ``PER_STAGE`` setting among ``options`` with the lowest mean KL(dense || pruned) on ``images``."""
    layers = list(LAYOUTS[PER_STAGE[0]][0])

    def kl(values: tuple[float, ...]) -> float:
        model.pruning.configure(dense=False, rule=PER_STAGE[1], layers=layers, placement="attention",
                                value=list(values))
        logp = model(images).log_softmax(dim=-1)
        return float((dense_logp.exp() * (dense_logp - logp)).sum(dim=-1).mean())

    return min(options, key=kl)


def discrete_setting(costs: dict, budget: float):
    """The option whose (deterministic, per-image) MACs is the largest <= budget (else the cheapest)."""
    fits = [o for o, c in costs.items() if c <= budget]
    return max(fits, key=costs.get) if fits else min(costs, key=costs.get)


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(models: dict[str, nn.Module], train_x: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
             levels: tuple[float, ...]) -> list[dict]:
    """Correct counts and per-image MACs of every method on every model at every level."""
    rows = []
    one = val_x[:1]
    for name, model in models.items():
        base = prune.unpatch(copy.deepcopy(model))  # the same weights, unpatched: dense and baselines
        dense = count_macs(base, one)
        rows.append(dict(model=name, method="dense", level=1.0, correct=int((base(val_x).argmax(-1) == val_y).sum()),
                         macs=dense * len(val_y), n=len(val_y)))
        model.pruning.configure(dense=True, layers=[LAYER])
        model(train_x)
        tis = model.pruning.tis  # TIS at layer 1 does not depend on the rule or the placement
        calib_x = train_x[torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))[:CALIB]]
        dense_logp = base(train_x).log_softmax(dim=-1)
        tome = {r: count_macs(tome_forward, base, one, r) for r in range(33)}
        evit = {k / 64: count_macs(evit_forward, base, one, k / 64) for k in range(1, 65)}
        for level in levels:
            budget = level * dense
            for layout, (layers, placements, rules, _) in LAYOUTS.items():
                for placement in placements:
                    for rule in rules:
                        if len(layers) == 1:
                            value = vitaccel_setting(model, tis, rule, placement, budget)
                        else:
                            value = staged_setting(model, calib_x, layout, rule, placement, budget, tis.shape[1])
                        model.pruning.configure(dense=False, rule=rule, layers=list(layers), placement=placement,
                                                value=stage_values(layout, rule, value))
                        logits = model(val_x)
                        rows.append(dict(model=name, method=f"vitaccel {rule} ({placement}, {layout})", level=level,
                                         correct=int((logits.argmax(-1) == val_y).sum()),
                                         macs=int(model.pruning.stats["macs"].sum()), n=len(val_y)))
            values = faithful_setting(model, train_x, dense_logp, schedule_options(model, tis.shape[1], budget))
            model.pruning.configure(value=list(values))
            logits = model(val_x)
            rows.append(dict(model=name, method=f"vitaccel {PER_STAGE[1]} (attention, {PER_STAGE[0]}, per stage)",
                             level=level, correct=int((logits.argmax(-1) == val_y).sum()),
                             macs=int(model.pruning.stats["macs"].sum()), n=len(val_y), values=list(values)))
            for method, fn, costs in (("ToMe-style", tome_forward, tome), ("EViT-style", evit_forward, evit)):
                arg = discrete_setting(costs, budget)
                rows.append(dict(model=name, method=method, level=level,
                                 correct=int((fn(base, val_x, arg).argmax(-1) == val_y).sum()),
                                 macs=costs[arg] * len(val_y), n=len(val_y)))
    return rows


def table(rows: list[dict], dense_macs: dict[str, float]) -> str:
    """Markdown: one row per method, per model the top-1 % at each level (MACs % in brackets)."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    levels = sorted({r["level"] for r in rows if r["method"] != "dense"}, reverse=True)
    sums: dict = {}
    for r in rows:
        s = sums.setdefault((r["model"], r["method"], r["level"]), [0, 0, 0])
        s[0] += r["correct"]
        s[1] += r["macs"]
        s[2] += r["n"]
    head = "| method | " + " | ".join(f"{m} @ " + " / ".join(f"{round(100 * lv)}%" for lv in levels)
                                     for m in models) + " |"
    lines = [head, "|---|" + "---|" * len(models)]
    for method in methods:
        cells = []
        for m in models:
            keys = [(m, method, 1.0)] if method == "dense" else [(m, method, lv) for lv in levels]
            cells.append(" / ".join(f"{100 * sums[k][0] / sums[k][2]:.2f} "
                                    f"({100 * sums[k][1] / sums[k][2] / dense_macs[m]:.0f})"
                                    for k in keys if k in sums))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    total = {m: sums[(m, "dense", 1.0)][2] for m in models}
    lines.append(f"\nimages validated per model: {total}")
    return "\n".join(lines)


def common_rows(per_fold: list[list[dict]]) -> list[dict]:
    """The rows of every fold, keeping only (model, method) pairs that every fold has (a fold run
    by an earlier version of this script may have more), so each cell covers the same images."""
    pairs = [{(r["model"], r["method"]) for r in rows} for rows in per_fold]
    shared = set.intersection(*pairs) if pairs else set()
    return [r for rows in per_fold for r in rows if (r["model"], r["method"]) in shared]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: fold 1 only, 360 training images, 1 teacher and 2 student epochs")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only", type=int, nargs="+", default=None,
                        help="run these folds (0-based) only, e.g. in two processes; the table covers "
                             "every fold whose results are in --out")
    parser.add_argument("--out", default="runs/prune-accuracy")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, labels = load_digits_tensors(32)
    splits = folds(len(labels), args.folds)
    run_folds = [0] if args.quick else (args.only if args.only is not None else range(args.folds))
    quick = {"teacher": ["epochs=1", "warmup_epochs=0"], "student": ["epochs=2", "warmup_epochs=0"]}
    extra = quick if args.quick else {"teacher": [], "student": []}
    normalise = tensor_transform("digits", False, False)
    for k in run_folds:
        out = Path(args.out) / f"fold{k}"
        if (out / "rows.json").exists():  # evaluated already
            continue
        val = splits[k]
        train_idx = torch.cat([s for j, s in enumerate(splits) if j != k]).sort().values
        train_idx = train_idx[:360] if args.quick else train_idx
        data = fold_data(images, labels, val, train_idx)
        teacher = trained(recipe("digits-teacher", [f"out_dir={out / 'teacher'}", "progress=false",
                                                    *extra["teacher"]]), data)
        models = {"teacher": model_from_checkpoint(teacher)[0]}
        for name, (folder, overrides) in STUDENTS.items():
            student = trained(recipe("digits-sait", [f"out_dir={out / folder}", f"teacher={teacher}",
                                                     f"init={teacher}", *overrides,
                                                     "progress=false", *extra["student"]]), data)
            models[name] = model_from_checkpoint(student)[0]
        for model in models.values():
            model.eval()
        rows = evaluate(models, normalise(images[train_idx]), normalise(images[val]), labels[val], LEVELS)
        (out / "rows.json").write_text(json.dumps(rows))
        write_table(Path(args.out), args.folds)
    write_table(Path(args.out), args.folds)  # also when every fold was evaluated already


def write_table(out: Path, k: int) -> None:
    """Print the table over every evaluated fold in ``out`` and write it to ``out/table.md``."""
    done = sorted(out.glob("fold*/rows.json"))
    if not done:
        return
    rows = common_rows([json.loads(path.read_text()) for path in done])
    dense = {r["model"]: r["macs"] / r["n"] for r in rows if r["method"] == "dense"}
    text = f"folds evaluated: {len(done)} of {k}\n\n" + table(rows, dense)
    print(text, flush=True)
    (out / "table.md").write_text(text + "\n")

if __name__ == "__main__":
    main()
