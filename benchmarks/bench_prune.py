"""Token pruning: wall-clock speed-up over the dense model next to the MACs ratio.

DeiT-S (random weights, 224 px), pruning after block 4 with ``topk`` keep 0.5 and 0.3, at batch
64 and batch 1. Every figure is a ratio against the unpatched timm model with the same weights,
measured in the same run with the timings interleaved (warm-up, then the median of repeats), so
machine load affects both sides alike. ``patched dense`` is the patched model with
``dense=True`` (it also computes TIS). ``timm, k tokens`` is a reference, not a method: the
unpatched timm blocks on the first tokens, cut to topk's count after block P with no scoring,
selection or package sum (the same sequence lengths; MACs counted as topk's): how close to the
MACs ratio pruning can get on this machine with zero per-forward overhead. Targets (speed-up /
MACs ratio): >= 1.0 at batch 64, >= 0.97 at batch 1. ``--compile`` adds ``torch.compile``
(inductor) of the unpatched model and of each topk setting (one compiled model per setting, no
graph breaks), timed in the same run.

A second table runs blocks 5..12 on a variable-length batch (each image keeps a count drawn
uniformly from 20-100% of the tokens, as adaptive rules give): plain padding with a key mask,
per-token layers on real tokens only (masked attention at the padded length), and vitaccel's
scheme (the same in length-sorted sub-batches, each padded to its own longest image), all against
the same blocks on all tokens; the MACs ratio counts real tokens only. Between the two tables:
the number of aten ops one batch-1 forward dispatches, timm's and each patched setting's.

    python benchmarks/bench_prune.py            # full run (a few minutes on 2 CPU cores)
    python benchmarks/bench_prune.py --quick    # batch 16 and 1, fewer repeats
    python benchmarks/bench_prune.py --device cuda --dtype bfloat16
    python benchmarks/bench_prune.py --threads 1 --compile --batch 1   # compiled vs eager
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
from contextlib import nullcontext

import timm
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import vitaccel.prune as prune
from timing import interleaved
from vitaccel.measure import macs
from vitaccel.prune._timm import embed
from vitaccel.prune.macs import block_macs
from vitaccel.prune.patching import BUCKETS
from vitaccel.prune.rows import RealRows, run_bucketed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_runs(runs: dict, x: torch.Tensor, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each ``runs[name](x)``, interleaved (``timing.interleaved``)."""
    with torch.inference_mode():
        times = interleaved({name: (lambda run=run: run(x)) for name, run in runs.items()}, warmup, repeats,
                            sync=lambda: _sync(x.device))
    return {name: statistics.median(t) for name, t in times.items()}


class _OpCounter(TorchDispatchMode):
    """Counts the aten ops a forward dispatches (each one a kernel launch and its Python/C++ overhead)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def op_count(run, x: torch.Tensor) -> int:
    """Aten ops of one ``run(x)``."""
    with torch.inference_mode(), _OpCounter() as counter:
        run(x)
    return counter.ops


def varlen_table(model: torch.nn.Module, layer: int, batch: int, warmup: int, repeats: int) -> None:
    """Blocks after ``layer`` on a padded variable-length batch vs the same blocks on all tokens."""
    device = model.cls_token.device
    blocks, full = model.blocks[layer:], model.patch_embed.num_patches + 1
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(max(2, full // 5), full + 1, (batch,), generator=generator)
    lengths[0] = full  # one image keeps everything: the batch is padded to the dense length
    valid = (torch.arange(full) < lengths[:, None]).to(device)
    dense_x = torch.randn(batch, full, model.embed_dim, device=device, dtype=model.cls_token.dtype)
    x, mask, rows = dense_x * valid[..., None], valid[:, None, None, :], RealRows(valid)

    def run_blocks(h: torch.Tensor, attn_mask=None, real: RealRows | None = None) -> torch.Tensor:
        for blk in blocks:
            with nullcontext() if real is None else real.only(blk):
                h = blk(h, attn_mask=attn_mask)
        return h

    def sub_batches(_) -> torch.Tensor:
        return run_bucketed(lambda h, r: run_blocks(h, None if r is None else r.attn_mask, r), x, valid, BUCKETS)[0]

    runs = {"all tokens": lambda _: run_blocks(dense_x), "padded+mask": lambda _: run_blocks(x, mask),
            "real rows": lambda _: run_blocks(x, mask, rows), f"{BUCKETS} sub-batches": sub_batches}
    seconds = time_runs(runs, x, warmup, repeats)
    work = sum(block_macs(blk, full) * batch for blk in blocks)
    real = sum(int(block_macs(blk, lengths).sum()) for blk in blocks)
    print(f"\nblocks {layer + 1}..{len(model.blocks)} on a variable-length batch of {batch}: "
          f"{int(lengths.sum())} of {batch * full} tokens real (MACs ratio {work / real:.2f})")
    print(f"{'scheme':<14} {'ms/batch':>9} {'speed-up':>8} {'speed/MACs':>10}")
    for name, sec in seconds.items():
        speedup = seconds["all tokens"] / sec
        ratio = 1.0 if name == "all tokens" else work / real
        print(f"{name:<14} {1e3 * sec:>9.1f} {speedup:>8.2f} {speedup / ratio:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 16 and 1, 1 warm-up, 3 repeats")
    parser.add_argument("--model", default="deit_small_patch16_224")
    parser.add_argument("--layer", type=int, default=4)
    parser.add_argument("--keep", type=float, nargs="+", default=[0.5, 0.3])
    parser.add_argument("--batch", type=int, nargs="+", default=None, help="default 64 1")
    parser.add_argument("--repeats", type=int, default=None, help="default 7 (quick: 3)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    args = parser.parse_args()
    batches = args.batch or ([16, 1] if args.quick else [64, 1])
    repeats = args.repeats or (3 if args.quick else 7)
    warmup = 1 if args.quick else 2
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    torch.manual_seed(0)
    native = timm.create_model(args.model, pretrained=False).eval().to(device, dtype)
    pruned = prune.patch(copy.deepcopy(native), layer=args.layer, rule="topk", value=args.keep[0])
    configs = {"patched dense": dict(dense=True)}
    configs.update({f"topk {k:g}": dict(dense=False, rule="topk", value=k) for k in args.keep})

    def run_config(settings: dict):
        def run(x: torch.Tensor) -> torch.Tensor:
            pruned.pruning.configure(**settings)
            return pruned(x)
        return run

    def cut(tokens: int):
        def run(x: torch.Tensor) -> torch.Tensor:
            h = embed(native, x)
            for blk in native.blocks[:args.layer]:
                h = blk(h)
            h = h[:, :tokens]
            for blk in native.blocks[args.layer:]:
                h = blk(h)
            return native.forward_head(native.norm(h))
        return run

    references = {}
    for k in args.keep:
        pruned.pruning.configure(dense=False, rule="topk", value=k)
        with torch.inference_mode():
            pruned(torch.zeros(1, 3, 224, 224, device=device, dtype=dtype))
        references[f"timm, {int(pruned.pruning.stats['tokens'][0])} tokens"] = (
            int(pruned.pruning.stats["tokens"][0]), int(pruned.pruning.stats["macs"][0]))
    runs = {"timm dense": native, **{name: run_config(s) for name, s in configs.items()},
            **{name: cut(tokens) for name, (tokens, _) in references.items()}}
    if args.compile:
        runs["timm dense compiled"] = torch.compile(native, dynamic=False)
        work_settings = dict(configs)
        for k in args.keep:
            model = prune.patch(copy.deepcopy(native), layer=args.layer, rule="topk", value=k)
            runs[f"topk {k:g} compiled"] = torch.compile(model, fullgraph=True, dynamic=False)
            work_settings[f"topk {k:g} compiled"] = dict(dense=False, rule="topk", value=k)
        configs = work_settings
    print(f"{args.model}, layer {args.layer}, {device.type} {args.dtype}, {args.threads} threads, "
          f"torch {torch.__version__}, timm {timm.__version__}; median of {repeats} after {warmup} warm-up")
    print(f"{'batch':>5}  {'config':<20} {'ms/batch':>9} {'img/s':>8} {'GMACs/img':>9} "
          f"{'speed-up':>8} {'MACs ratio':>10} {'speed/MACs':>10}")
    for batch in batches:
        x = torch.randn(batch, 3, 224, 224, device=device, dtype=dtype)
        dense_macs = macs(native, x[:1])["macs"].double().mean().item()
        work = {"timm dense": dense_macs, "timm dense compiled": dense_macs,
                **{name: float(m) for name, (_, m) in references.items()}}
        for name, settings in configs.items():
            pruned.pruning.configure(**settings)
            work[name] = macs(pruned, x[:1])["macs"].double().mean().item()
        seconds = time_runs(runs, x, warmup, repeats)
        for name, sec in seconds.items():
            speedup, ratio = seconds["timm dense"] / sec, dense_macs / work[name]
            print(f"{batch:>5}  {name:<20} {1e3 * sec:>9.1f} {batch / sec:>8.1f} {work[name] / 1e9:>9.3f} "
                  f"{speedup:>8.2f} {ratio:>10.2f} {speedup / ratio:>10.2f}")
    one = torch.randn(1, 3, 224, 224, device=device, dtype=dtype)
    counts = {name: op_count(runs[name], one) for name in ("timm dense", *configs) if "compiled" not in name}
    base = counts["timm dense"]
    print("\naten ops per batch-1 forward: " + ", ".join(
        f"{name} {n}" + ("" if name == "timm dense" else f" ({n - base:+d})") for name, n in counts.items()))
    varlen_table(native, args.layer, max(batches), warmup, repeats)


if __name__ == "__main__":
    main()
