"""OCP MX block formats on whole models, and MX quantize speed as a ratio to ``x.to(bfloat16)``.

    python benchmarks/bench_mx.py [--vit CHECKPOINT] [--images N] [--repeats R] [--only random demo speed]

1. A random ViT (vitaccel's ``vit_nano_patch4_32``, timm, seeded weights) on random 32x32 images:
   output SQNR against float32 of every MX format (both operands, blocks of 32 along K, adder
   tree of 32), next to plain float formats and the fp13 preset.
2. With ``--vit``, the demo's ViT (``vitaccel train --config digits-teacher``, or the demo's
   cached ``teacher-s0/best.pt``) on the digits validation split: top-1 accuracy, agreement with
   float32 and output SQNR, same configs.
3. ``MXFormat.quantize`` of 1576x384 randn activations (blocks along the last axis) over
   ``x.to(torch.bfloat16)`` of the same tensor, interleaved, median of repeats, one thread.

Models run ``exact=False`` (operands and products exact, accumulation in BLAS order; the tests show
the exact tiers equal to golden). No download: the checkpoint and data are local.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from timing import interleaved
from vitaccel.arith import AcceleratorConfig
from vitaccel.arith.mx import MX_NAMES, MXFormat


def configs() -> list[AcceleratorConfig]:
    """fp13, the plain 8-bit floats (no block scale), every MX format (group of 32, exact tree)."""
    def both(fmt: str, name: str | None = None) -> AcceleratorConfig:
        return AcceleratorConfig.from_dict(dict(name=name or fmt, datapath="float", float_datapath=dict(
            a_format=fmt, b_format=fmt, group_size=32)))
    return [AcceleratorConfig.preset("fp13"), both("e4m3"), both("e5m2"),
            *[AcceleratorConfig.preset(p) if p in ("mxfp8", "mxfp4") else both(n, p)
              for n, p in ((n, {"mxfp8_e4m3": "mxfp8", "mxfp4": "mxfp4"}.get(n, n)) for n in MX_NAMES)]]


def sqnr(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.double().pow(2).sum() / (out.double() - ref.double()).pow(2).sum()))


def random_vit(images: int) -> None:
    import vitaccel.emulate
    from vitaccel.models import create_model

    torch.manual_seed(0)
    model = create_model("vit_nano_patch4_32", num_classes=10).eval()
    x = torch.randn(images, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
    print(f"\nrandom vit_nano_patch4_32 (seed 0), {images} random images: output SQNR vs float32, "
          "top-1 agreement with float32")
    print("| config | operands | SQNR dB | top-1 agreement |\n|---|---|---|---|")
    for config in configs():
        with torch.no_grad(), vitaccel.emulate(model, config, exact=False, stats=False):
            out = model(x)
        agree = float((out.argmax(-1) == ref.argmax(-1)).float().mean())
        print(f"| {config.name} | {config.float_datapath.a_format} | {sqnr(out, ref):.1f} | {agree:.3f} |", flush=True)


def demo_vit(path: str) -> None:
    from torch.utils.data import DataLoader

    from vitaccel.data import build_datasets
    from vitaccel.emulate import evaluate
    from vitaccel.train.build import checkpoint_data, model_from_checkpoint

    model, ckpt = model_from_checkpoint(path, pruned=False)
    val = DataLoader(build_datasets(checkpoint_data(ckpt, [], "--vit")).val, batch_size=128, shuffle=False)
    print(f"\ndemo ViT {path} on {len(val.dataset)} digits validation images")
    print("| config | operands | top-1 | float32 top-1 | agreement | output SQNR dB |\n|---|---|---|---|---|---|")
    for config in configs():
        r = evaluate(model, config, val, calib_batches=0, exact=False)  # stats: the float32 comparison
        print(f"| {config.name} | {config.float_datapath.a_format} | {r.accuracy:.4f} | {r.reference_accuracy:.4f} "
              f"| {r.agreement:.4f} | {r.output_sqnr_db:.1f} |", flush=True)


def speed(repeats: int) -> None:
    torch.set_num_threads(1)
    a = torch.randn(1576, 384, generator=torch.Generator().manual_seed(0))
    print(f"\nMXFormat.quantize (float32 out) / x.to(bfloat16), 1576x384 randn, 1 thread, median of {repeats}")
    print("| format | nearest_even | toward_zero |\n|---|---|---|")
    for name in MX_NAMES:
        fmt = MXFormat.named(name)
        cells = []
        for rounding in ("nearest_even", "toward_zero"):
            t = interleaved({"native": lambda: a.to(torch.bfloat16),
                             "ours": lambda fmt=fmt, r=rounding: fmt.quantize(a, rounding=r)}, 1, repeats)
            cells.append(statistics.median(t["ours"]) / statistics.median(t["native"]))
        print(f"| {name} | {cells[0]:.1f}x | {cells[1]:.1f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vit", default=None, help="a digits ViT checkpoint (e.g. the demo's teacher-s0/best.pt)")
    parser.add_argument("--images", type=int, default=64, help="random images for the random ViT")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--only", nargs="+", choices=("random", "demo", "speed"), default=("random", "demo", "speed"))
    args = parser.parse_args()
    print(f"torch {torch.__version__}")
    if "random" in args.only:
        random_vit(args.images)
    if args.vit and "demo" in args.only:
        demo_vit(args.vit)
    if "speed" in args.only:
        speed(args.repeats)


if __name__ == "__main__":
    main()
