"""Co-simulation throughput of the circuits (Amaranth's Python simulator) and the cost of the flow.

Per element: vectors per second of co-simulation (circuit outputs for random input vectors, many
copies of the element per simulator step), checked against golden on the way. Per preset: time to
build and elaborate the dot unit, co-simulate dot products (vectors = clocks), and export Verilog +
golden vectors + bench (and run it in Icarus when ``iverilog`` is on PATH). Finally the exhaustive
integer-lane sweep: every signed 8-bit pair for every keep_bits 1..8 and rounding (1,572,864 vectors).

Synthesis (``--synth``): Yosys time per unit, first call (fresh cache) and cached; gate-level
toggle-count throughput, combinational and clocked; the sanity table of the multipliers (exact 8x8,
int8-lot4 lane, DRUM-style, FP13 direct and nibble, bf16, fp16: cells, transistors, depth, energy
per op on uniform random operands and on a trained student's own operands), then every unit the
demo's presets cost from synthesis (lane, adder tree, registered accumulator; exact float trees
block by block), with its synthesis time (what a cold demo adds) and energy per op.
``--demo`` times ``vitaccel demo`` (with its Circuits section) twice on fresh caches: first run
(Yosys compile, training, synthesis) and cached.

    flock /tmp/vitaccel-timing.lock python benchmarks/bench_hw.py            # about 5 minutes
    flock /tmp/vitaccel-timing.lock python benchmarks/bench_hw.py --quick    # no exhaustive sweep
    flock /tmp/vitaccel-timing.lock python benchmarks/bench_hw.py --synth --checkpoint STUDENT.pt
    flock /tmp/vitaccel-timing.lock python benchmarks/bench_hw.py --units --checkpoint STUDENT.pt  # demo units only
    flock /tmp/vitaccel-timing.lock python benchmarks/bench_hw.py --demo     # about 2 x 10 minutes
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from amaranth.hdl import Fragment

from vitaccel.arith import AcceleratorConfig, golden
from vitaccel.arith.config import FloatDatapath, IntDatapath
from vitaccel.arith.formats import FloatFormat
from vitaccel.hw import build
from vitaccel.hw.export import _float_operands, _int_operands, export, golden_accumulators
from vitaccel.hw.float_lane import FloatLane
from vitaccel.hw.float_tree import FloatTree
from vitaccel.hw.fp32 import FloatAdd
from vitaccel.hw.int_lane import IntLane
from vitaccel.hw.sim import group_stream, run_comb, run_streams
from vitaccel.hw.tree import IntTree


def rate(make, vectors) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = run_comb(make, vectors)
    return len(vectors) / (time.perf_counter() - t0), out


def elements(n: int) -> None:
    rng = random.Random(0)
    print(f"\nco-simulation throughput per element ({n} random vectors each)")
    print(f"{'element':<34} {'vectors/s':>10}  {'mismatches':>10}")
    pairs = [{"a": rng.randint(-128, 127), "w": rng.randint(-128, 127)} for _ in range(n)]
    for k, r in ((None, "truncate"), (4, "unbiased"), (4, "nearest")):
        dp = IntDatapath(keep_bits=k, keep_rounding=r)
        v, out = rate(lambda dp=dp: IntLane(dp), pairs)
        bad = sum(o["p"] != golden.int_multiply(p["a"], p["w"], k, r) for p, o in zip(pairs, out))
        print(f"{f'int lane keep={k} {r}':<34} {v:>10.0f}  {bad:>10}")
    dp = IntDatapath(psum_bits=16, psum_drop_lsbs=4, psum_rounding="nearest")
    groups = [{f"p[{i}]": rng.randint(-2 ** 14, 2 ** 14) for i in range(16)} for _ in range(n // 16)]
    v, out = rate(lambda: IntTree(dp), groups)
    bad = sum(o["psum"] != golden.overflow(golden.drop_lsbs(sum(g.values()), 4, "nearest"), 16, "saturate")
              for g, o in zip(groups, out))
    print(f"{'int tree G=16 psum16 (groups)':<34} {v:>10.0f}  {bad:>10}")
    codec = AcceleratorConfig.preset("int8-lot4-psum").int_datapath.psum_codec()
    from vitaccel.hw.codecs import CodecRoundTrip
    xs = [{"x": rng.randint(-2 ** 23, 2 ** 23 - 1)} for _ in range(n)]
    v, out = rate(lambda: CodecRoundTrip(codec, 24, "saturate"), xs)
    bad = sum(o["y"] != golden.overflow(int(golden.codec_apply(codec, x["x"])), 24, "saturate")
              for x, o in zip(xs, out))
    print(f"{'float codec 1+4+15 round trip':<34} {v:>10.0f}  {bad:>10}")
    fmt = FloatFormat.named("e5m7")
    codes = [{"a": rng.randrange(2 ** 13), "b": rng.randrange(2 ** 13)} for _ in range(n)]
    for mult in ("direct", "nibble"):
        v, _ = rate(lambda mult=mult: FloatLane(fmt, fmt, mult), codes)
        print(f"{f'float lane fp13 {mult}':<34} {v:>10.0f}  {'(tests)':>10}")
    for fp in (FloatDatapath(), FloatDatapath(align_bits=16)):
        lanes = run_comb(lambda: FloatLane(fmt, fmt), codes[:n // 4])
        grp = [{f"p[{i}]": lanes[j * 16 + i]["p"] for i in range(16)} for j in range(len(lanes) // 16)]
        v, _ = rate(lambda fp=fp: FloatTree(fp), grp)
        print(f"{f'float tree G=16 align={fp.align_bits} (groups)':<34} {v:>10.0f}  {'(tests)':>10}")
    ab = [{"a": rng.getrandbits(31), "b": rng.getrandbits(31)} for _ in range(n)]
    v, _ = rate(FloatAdd, ab)
    print(f"{'float32 accumulator add':<34} {v:>10.0f}  {'(tests)':>10}")


def presets(icarus: bool) -> None:
    print("\nper preset: build (elaborate the dot unit), co-simulate dot products, export (+ Icarus run)")
    print(f"{'preset':<16} {'build s':>8} {'clocks':>7} {'clocks/s':>9} {'mismatch':>8} {'export s':>9} "
          f"{'icarus':>12}")
    for name in [p for p in AcceleratorConfig.presets() if p != "fp32" and not p.startswith("mx")]:  # MX: no circuit
        cfg = AcceleratorConfig.preset(name)
        t0 = time.perf_counter()
        circuits = build(cfg)
        Fragment.get(circuits.dot(), None)
        t_build = time.perf_counter() - t0
        rng = random.Random(1)
        pairs = _int_operands(cfg, rng) if cfg.datapath == "int" else _float_operands(cfg, rng)
        g = (cfg.int_datapath or cfg.float_datapath).group_size
        streams = [group_stream(a, b, g) for a, b in pairs]
        t0 = time.perf_counter()
        outs = run_streams(circuits.dot, streams)
        t_sim = time.perf_counter() - t0
        clocks = sum(len(s) for s in streams)
        width = cfg.int_datapath.acc_bits if cfg.datapath == "int" else 32
        bad = sum([o["acc"] & (2 ** width - 1) for o in out] != golden_accumulators(cfg, a, b)
                  for (a, b), out in zip(pairs, outs))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            done = export(cfg, tmp)
            t_exp = time.perf_counter() - t0
            result = "skipped"
            if icarus:
                run = subprocess.run("iverilog -g2012 -o tb.vvp tb_dot_unit.v dot_unit.v && vvp -n tb.vvp", shell=True,
                                     cwd=tmp, capture_output=True, text=True)
                result = f"PASS {done.vectors}" if run.returncode == 0 and "PASS" in run.stdout else "FAIL"
        print(f"{name:<16} {t_build:>8.2f} {clocks:>7} {clocks / t_sim:>9.0f} {bad:>8} {t_exp:>9.1f} {result:>12}")


def lane_sweep() -> None:
    pairs = [{"a": a, "w": w} for a in range(-128, 128) for w in range(-128, 128)]
    t0 = time.perf_counter()
    total = bad = 0
    for k in range(1, 9):
        for r in ("truncate", "nearest", "unbiased"):
            dp = IntDatapath(keep_bits=k, keep_rounding=r)
            out = run_comb(lambda dp=dp: IntLane(dp), pairs)
            bad += sum(o["p"] != golden.int_multiply(p["a"], p["w"], k, r) for p, o in zip(pairs, out))
            total += len(pairs)
    dt = time.perf_counter() - t0
    print(f"\nexhaustive lane sweep: {total} vectors (8-bit pairs x keep_bits 1..8 x 3 roundings) in {dt:.1f} s "
          f"({total / dt:.0f} vectors/s incl. golden), {bad} mismatches")


def _lanes() -> dict[str, tuple[str, object]]:
    """Sanity-table units: name -> (config whose recorded operands drive it, component)."""
    from vitaccel.hw.energy import ExactMultiplier
    from vitaccel.hw.sweep import drum

    lot4 = AcceleratorConfig.preset("int8-lot4").int_datapath
    out = {"exact 8x8": ("int8", ExactMultiplier(8, 8)),
           "int8-lot4 lane (detector+shifter)": ("int8-lot4", IntLane(lot4)),
           "DRUM-style k4 (both operands)": ("int8", drum(4))}
    for label, preset, form in (("FP13 direct", "fp13", "direct"), ("FP13 nibble", "fp13", "nibble"),
                                ("bf16", "bf16", "direct"), ("fp16", "fp16", "direct")):
        fp = AcceleratorConfig.preset(preset).float_datapath
        fa = FloatFormat.named(fp.a_format)
        out[label] = (preset, FloatLane(fa, FloatFormat.named(fp.b_format), form))
    return out


def synthesis(checkpoint: str | None) -> None:
    """Synthesis time per unit (fresh cache, then cached), toggle throughput, the sanity table."""
    from vitaccel.emulate.recording import record
    from vitaccel.hw.energy import calibrate, energy_per_op
    from vitaccel.hw.synth import synthesize, yosys_version

    t0 = time.perf_counter()
    version = yosys_version()
    print(f"\n{version}: first call in this process {time.perf_counter() - t0:.1f} s "
          "(includes the WebAssembly compile when its cache is cold)")
    units = _lanes()
    cache = Path(tempfile.mkdtemp(prefix="bench-synth-"))
    print(f"\nsynthesis time per unit (fresh cache {cache}, then cached)")
    print(f"{'unit':<36} {'first s':>8} {'cached s':>9} {'cells':>6} {'same cells':>10}")
    results = {}
    for label, (_, comp) in units.items():
        name = "u_" + "".join(c if c.isalnum() else "_" for c in label)
        first = synthesize(comp, name, cache=cache)
        t0 = time.perf_counter()
        again = synthesize(comp, name, cache=cache)
        t_cached = time.perf_counter() - t0
        fresh = synthesize(comp, name, cache=False)             # determinism: a second Yosys run
        results[label] = first
        print(f"{label:<36} {first.seconds:>8.1f} {t_cached:>9.2f} {first.n_cells:>6} "
              f"{str(fresh.cells == first.cells and again.cached):>10}")
    nl = results["exact 8x8"].netlist()
    rng = np.random.default_rng(0)
    stream = {"a": rng.integers(-128, 128, 1 << 16), "b": rng.integers(-128, 128, 1 << 16)}
    t0 = time.perf_counter()
    nl.toggle_counts(stream)
    dt = time.perf_counter() - t0
    print(f"\ntoggle counting: exact 8x8 netlist ({results['exact 8x8'].n_cells} gates), "
          f"{1 << 16} ops in {dt:.2f} s = {(1 << 16) / dt:.0f} ops/s")
    cal = calibrate(cache=cache)
    model, images = student(checkpoint)
    print(f"\nsanity table ({version}; {cal.pj_per_toggle:.4g} pJ/toggle, exact 8x8 on uniform random = "
          f"{cal.reference_pj} pJ; model operands: {checkpoint or 'none given'}, 8 images, 32 groups per product)")
    print(f"{'unit':<36} {'cells':>6} {'transistors':>11} {'depth':>5} {'pJ random':>9} {'pJ model':>9}")
    for label, (preset, _) in units.items():
        unit = results[label]
        random_pj = energy_per_op(unit, calibration=cal, n=1 << 14).energy_pj
        model_pj = float("nan")
        if model is not None:
            a, b = record(model, images, preset, rows=32).operands()
            second = next(p for p in unit.netlist().inputs if p != "a")
            model_pj = energy_per_op(unit, {"a": a.T.ravel(), second: b.T.ravel()}, calibration=cal).energy_pj
        print(f"{label:<36} {unit.n_cells:>6} {unit.transistors:>11} {unit.depth:>5} {random_pj:>9.4f} "
              f"{model_pj:>9.4f}")
    demo_units(cal, cache, model, images)
    shutil.rmtree(cache, ignore_errors=True)


def student(checkpoint: str | None) -> tuple[object, object]:
    """A student checkpoint's model (dense) and its first 8 validation images, or (None, None)."""
    if not checkpoint:
        return None, None
    import torch

    from vitaccel.data import build_datasets
    from vitaccel.train.build import checkpoint_data, model_from_checkpoint

    model, ckpt = model_from_checkpoint(Path(checkpoint))
    model.pruning.configure(dense=True)
    val = build_datasets(checkpoint_data(ckpt, [], "--data")).val
    return model, torch.stack([val[i][0] for i in range(8)])


def units_only(checkpoint: str | None) -> None:
    """Only the demo's units (fresh cache): synthesis time, figures, energy, clocked throughput."""
    from vitaccel.hw.energy import calibrate
    from vitaccel.hw.synth import yosys_version

    print(yosys_version())
    cache = Path(tempfile.mkdtemp(prefix="bench-synth-"))
    model, images = student(checkpoint)
    demo_units(calibrate(cache=cache), cache, model, images)
    shutil.rmtree(cache, ignore_errors=True)


DEMO_PRESETS = ("int8", "int8-lot4", "int8-lot4-psum", "fp13", "bf16", "fp16")


def demo_units(cal, cache: Path, model, images) -> None:
    """Every unit of the demo's presets from synthesis: time (fresh cache), figures, energy per op;
    then toggle throughput of a composed float tree and of the clocked accumulators."""
    from vitaccel.emulate.recording import record
    from vitaccel.hw.costs import mac_energies, unit_rows
    from vitaccel.hw.synth import synth_element

    print("\nunits the demo costs from synthesis (fresh cache; flow 'hierarchical' = each distinct block once, "
          "composed; accumulator = registered unit, clocked simulation)")
    print(f"{'preset':<15} {'unit':<17} {'flow':<12} {'first s':>8} {'cells':>6} {'transistors':>11} {'depth':>5} "
          f"{'pJ random':>9} {'pJ model':>9}  per")
    added, simulated = {}, {}
    for name in DEMO_PRESETS:
        circuits = build(name)
        kind = "int" if circuits.config.datapath == "int" else "float"
        for element in (f"{kind}_lane", f"{kind}_tree", "accumulator_unit"):
            unit = synth_element(circuits, element, cache=cache)
            if not unit.cached and element in ("float_tree", "accumulator_unit"):   # new in the demo
                added[f"{name} {element}"] = unit.seconds
        t0 = time.perf_counter()
        rnd = mac_energies(name, calibration=cal, n=1024, cache=cache)
        mdl = None
        if model is not None:
            rec = record(model, images, name, rows=32)
            a, b = rec.operands()
            mdl = mac_energies(name, a, b, rec.firsts(), calibration=cal, cache=cache)
        simulated[name] = time.perf_counter() - t0
        for r in unit_rows(name, rnd, mdl, cache=cache):
            star = "" if r["transistors_complete"] else "+"
            model_pj = r["energy_model_pj"] if r["energy_model_pj"] is not None else float("nan")
            print(f"{name:<15} {r['element']:<17} {r['flow']:<12} {r['synth_s']:>8.1f} {r['cells']:>6} "
                  f"{str(r['transistors']) + star:>11} {r['depth']:>5} {r['energy_random_pj']:>9.4f} "
                  f"{model_pj:>9.4f}  {r['per']}")
    print("synthesis a cold demo adds (float trees, accumulators; lanes and int trees were synthesized before): "
          f"{sum(added.values()):.0f} s ("
          + ", ".join(f"{k} {v:.0f} s" for k, v in added.items()) + "); '+': flip-flops have no transistor estimate")
    print("gate-level simulation per preset (random and model operands, lane + tree + accumulator; synthesis "
          "cached): " + ", ".join(f"{k} {v:.1f} s" for k, v in simulated.items()))
    rng = np.random.default_rng(1)
    tree = synth_element(build("fp13"), "float_tree", cache=cache).netlist()
    lane = synth_element(build("fp13"), "float_lane", cache=cache).netlist()
    n = 4096
    codes = {k: rng.integers(0, 2 ** 13, (n, 16)) for k in ("a", "b")}
    products = {f"p__{i}": lane.simulate({"a": codes["a"][:, i], "b": codes["b"][:, i]})["p"] for i in range(16)}
    t0 = time.perf_counter()
    tree.toggle_counts(products)
    dt = time.perf_counter() - t0
    print(f"\ntoggle counting, combinational: fp13 composed tree ({len(tree.gates)} gates), {n} groups in {dt:.2f} s "
          f"= {n / dt:.0f} groups/s")
    for name in ("int8-lot4-psum", "fp13"):
        unit = synth_element(build(name), "accumulator_unit", cache=cache)
        nl = unit.netlist()
        data = "psum" if "psum" in nl.inputs else "sum"
        port = nl.inputs[data]
        cycles, lanes = 64, 256
        stream = {data: rng.integers(port.lo, port.hi, (cycles, lanes), endpoint=True),
                  "first": (rng.random((cycles, lanes)) < 0.1).astype(np.int64),
                  "en": np.ones((cycles, lanes), dtype=np.int64), "rst": np.zeros((cycles, lanes), dtype=np.int64)}
        t0 = time.perf_counter()
        nl.run(stream)
        dt = time.perf_counter() - t0
        print(f"toggle counting, clocked: {unit.name} ({len(nl.gates)} gates, {len(nl.flops)} flip-flops), "
              f"{cycles} cycles x {lanes} lanes in {dt:.2f} s = {cycles * lanes / dt:.0f} adds/s "
              f"({cycles / dt:.0f} cycles/s)")


def demo_times() -> None:
    """``vitaccel demo`` twice on fresh caches (Yosys, synthesis, training): first run and cached."""
    root = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    env = {**os.environ, "XDG_CACHE_HOME": str(root / "xdg")}
    for run in ("first", "cached"):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vitaccel", "demo", "--cache", str(root / "cache"), "--out",
                        str(root / f"out-{run}")], env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"demo with the Circuits section, {run} run: {time.perf_counter() - t0:.0f} s")
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer vectors, no exhaustive sweep")
    parser.add_argument("--synth", action="store_true", help="only synthesis, toggle throughput, sanity table")
    parser.add_argument("--checkpoint", help="student checkpoint whose operands drive the sanity table")
    parser.add_argument("--demo", action="store_true", help="only the demo's total time, first and cached run")
    parser.add_argument("--units", action="store_true", help="only the demo presets' units (part of --synth)")
    args = parser.parse_args()
    if args.units:
        units_only(args.checkpoint)
        return
    if args.synth or args.demo:
        if args.synth:
            synthesis(args.checkpoint)
        if args.demo:
            demo_times()
        return
    elements(2048 if args.quick else 16384)
    presets(shutil.which("iverilog") is not None)
    if not args.quick:
        lane_sweep()


if __name__ == "__main__":
    main()
