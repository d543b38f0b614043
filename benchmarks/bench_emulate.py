"""Whole-model emulation: time of an emulated forward as a ratio to the native float32 forward.

DeiT-S (timm ``deit_small_patch16_224``, random weights, 224 px), batch 8, on the CPU. Each
figure is a ratio against the native forward of the same model measured in the same run, the
timings interleaved round by round (warm-up, then median and best of the repeats) so machine
load hits both sides alike. Conversion (``convert``/``restore``) happens outside the timed call.
Emulated runs use ``stats=False`` (pure emulation); ``+stats`` rows add the per-op and output
error measurement that ``run.report()`` shows; ``capture only`` computes every captured product
with ``torch.matmul``: the emulator's own overhead (hooks, im2col, decomposed attention).
Targets: ``fp13`` exact=False <= 3x, ``int8-lot4-psum`` exact=False <= 6x (when the preset
exists); exact=True is measured once.

    python benchmarks/bench_emulate.py              # full run
    python benchmarks/bench_emulate.py --quick      # batch 2, fewer repeats, no exact=True runs
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics

import timm
import torch

from timing import interleaved
from vitaccel.arith import AcceleratorConfig
from vitaccel.emulate import Backend, convert, restore

TARGETS = {("fp13", False): 3.0, ("int8-lot4-psum", False): 6.0}


def time_interleaved(model: torch.nn.Module, x: torch.Tensor, runs: dict[str, dict | None],
                     warmup: int, repeats: int) -> dict[str, tuple[float, float]]:
    """(median, best) seconds of ``model(x)`` per run (None: native; else ``convert`` keyword
    arguments), interleaved round by round (``timing.interleaved``); conversion happens outside
    the timed call. On a shared machine other jobs only ever add time, so the best of the
    repeats is the steadier figure."""
    @contextlib.contextmanager
    def converted(name: str):
        if runs[name] is not None:
            convert(model, **runs[name])
        try:
            yield
        finally:
            if runs[name] is not None:
                restore(model)

    with torch.inference_mode():
        times = interleaved({name: (lambda: model(x)) for name in runs}, warmup, repeats, around=converted)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def output_sqnr(model: torch.nn.Module, x: torch.Tensor, kwargs: dict) -> float:
    with torch.inference_mode():
        run = convert(model, **kwargs)
        model(x)
        restore(model)
    return run.report().output_sqnr_db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deit_small_patch16_224")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help="batch 2, 2 repeats, no exact=True runs")
    parser.add_argument("--no-exact", action="store_true", help="skip the (slow) exact=True runs")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats, args.no_exact = 2, 2, True
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False).eval()
    x = torch.randn(args.batch, 3, *model.pretrained_cfg["input_size"][1:])
    presets = [p for p in ("fp13", "int8-lot4-psum") if p in AcceleratorConfig.presets()]
    print(f"{args.model}, batch {args.batch}, {args.threads} threads, torch {torch.__version__}; "
          f"presets: {presets}")

    # The emulator's own cost: every product captured and decomposed, computed by torch.matmul.
    capture_only = Backend("capture only", "float", lambda a, b, **_: torch.matmul(a, b))
    fast = {"native": None, "capture only (float32 products)": dict(config=capture_only, stats=False)}
    for preset in presets:
        if AcceleratorConfig.preset(preset).datapath == "int":
            from vitaccel.emulate import calibrate
            calibrate(model, preset, [x[:2]])
        fast[f"{preset} exact=False"] = dict(config=Backend.from_config(preset, False), stats=False)
        fast[f"{preset} exact=False +stats"] = dict(config=Backend.from_config(preset, False))
    seconds = time_interleaved(model, x, fast, args.warmup, args.repeats)
    (native, native_best) = seconds["native"]
    print(f"\n{'run':<34}{'median s':>9}{'x native':>9}{'best s':>8}{'x native':>9}  target (on best)")
    for name, (s, best) in seconds.items():
        target = TARGETS.get((name.split()[0], False)) if "+stats" not in name else None
        ratio = best / native_best
        verdict = "" if target is None else f"<= {target:g}x {'ok' if ratio <= target else 'MISSED'}"
        print(f"{name:<34}{s:>9.3f}{s / native:>9.2f}{best:>8.3f}{ratio:>9.2f}  {verdict}")

    if not args.no_exact:
        for preset in presets:
            backend = Backend.from_config(preset, True)
            exact = time_interleaved(model, x, {"native": None, "exact": dict(config=backend, stats=False)}, 0, 1)
            s, n = exact["exact"][0], min(exact["native"][0], native_best)
            print(f"{preset + ' exact=True':<34}{s:>9.3f}{s / n:>9.2f}  (one run, vs the best native)")

    print("\noutput SQNR vs float32 (exact=False):")
    for preset in presets:
        print(f"  {preset}: {output_sqnr(model, x, dict(config=preset, exact=False)):.1f} dB")


if __name__ == "__main__":
    main()
