"""The report's sections, rendered from the plain ``results`` dict that ``vitaccel report`` computes
(the same dict ``results.json`` holds). ``SECTIONS`` lists them in order; each takes ``results`` and
returns a ``Section``, or None when it has nothing to show. A new section (e.g. the circuits behind
each preset) is one function here and one entry in ``SECTIONS``, reading keys that its own stage
adds to ``results``."""

from __future__ import annotations

from typing import Callable

from vitaccel.viz.report import Section
from vitaccel.viz.table import fmt

QUESTION = ("For this model, what do token pruning and each accelerator datapath cost in accuracy, and what "
            "do they save in operations, memory traffic and energy?")
TOLERANCE = 1.0  # top-1 points below the reference that the summary still calls "within"
SUMMARY_HEADER = ["accelerator", "density", "top-1 %", "MACs (M)", "energy µJ", "tier"]


def _reference(results: dict) -> dict:
    """The dense run of the reference accelerator (fp32), else the first dense run."""
    dense = [r for r in results["runs"] if r["density"] == "dense"]
    return next((r for r in dense if r["accelerator"] == results.get("reference")), dense[0])


def summary_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """The combined table the terminal prints: accelerator x density."""
    return SUMMARY_HEADER, [[r["accelerator"], r["density"], f"{r['top1']:.2f}", f"{r['macs'] / 1e6:.2f}",
                             f"{r['energy_uj']:.2f}", r["tier"]] for r in results["runs"]]


def _answer(results: dict) -> list[str]:
    """The answer in three lines: tokens, arithmetic, both."""
    ref, dense = _reference(results), results["densities"][0]
    floor, lines = ref["top1"] - TOLERANCE, []
    ok = [d for d in results["densities"][1:] if d["top1"] >= dense["top1"] - TOLERANCE]
    if ok:
        d = min(ok, key=lambda d: d["macs"])
        lines.append(f"Tokens: at {d['density']} the student keeps {d['kept']:.1f} patches on average and "
                     f"{100 * d['macs_ratio']:.0f}% of the dense MACs ({d['macs'] / 1e6:.2f} M vs "
                     f"{dense['macs'] / 1e6:.2f} M), top-1 {d['top1']:.2f}% vs {dense['top1']:.2f}% dense.")
    else:
        lines.append(f"Tokens: every density tried loses more than {TOLERANCE:g} pt of top-1 against dense.")
    for label, pool in (("Arithmetic", [r for r in results["runs"] if r["density"] == "dense" and r is not ref]),
                        ("Both", [r for r in results["runs"] if r is not ref])):
        good = [r for r in pool if r["top1"] >= floor]
        if not good:
            lines.append(f"{label}: no run stays within {TOLERANCE:g} pt of {ref['accelerator']} dense.")
            continue
        r = min(good, key=lambda r: r["energy_uj"])
        lines.append(f"{label}: {r['accelerator']} at {r['density']} takes {r['energy_uj']:.2f} µJ per image, "
                     f"{100 * r['energy_uj'] / ref['energy_uj']:.1f}% of {ref['accelerator']} dense "
                     f"({ref['energy_uj']:.2f} µJ), top-1 {r['top1']:.2f}% vs {ref['top1']:.2f}%.")
    return lines


def summary_section(results: dict) -> Section:
    """The question, the answer in three lines, and the combined table."""
    header, rows = summary_rows(results)
    return Section("Summary", [QUESTION, *_answer(results),
                               f"Per image, over {results['images']} validation images; energy is an estimate "
                               f"(see Hardware cost). The {results.get('reference') or 'first'} dense run is the "
                               f"reference; \"within\" means at most {TOLERANCE:g} pt of top-1 below it."],
                   [(header, rows)])


def provenance_section(results: dict) -> Section:
    """Model, data, pruning, seed, checkpoint digest, versions, machine."""
    return Section("Provenance", [], [(["item", "value"], [[k, v] for k, v in results["provenance"].items()])])


def density_section(results: dict) -> Section:
    """Accuracy, tokens kept and MACs at each density on the same weights."""
    rows = [[d["density"], f"{d['top1']:.2f}", f"{d['kept']:.1f} ± {d['kept_std']:.1f}", f"{d['macs'] / 1e6:.2f}",
             f"{100 * d['macs_ratio']:.0f}"] for d in results["densities"]]
    figs = results["figures"]
    return Section(
        "Token pruning: one set of weights, many densities",
        [f"{results['images']} validation images. MACs are multiply-accumulates per image (1 MAC = 2 FLOPs) over "
         "the shapes actually executed, padding excluded; the same figures are used in every table."],
        [(["density", "top-1 %", "patch tokens kept", "MACs/image (M)", "% of dense MACs"], rows)],
        [(figs[k], cap) for k, cap in (("accuracy_vs_macs", "Top-1 against MACs per image; dense is the star."),
                                       ("token_masks", "Kept patches outlined on validation images, dense and "
                                                       "at several densities (pruned patches dimmed)."))
         if k in figs])


def accelerator_section(results: dict) -> Section:
    """Top-1, agreement with float32 and logit SQNR of every accelerator x density."""
    rows = [[r["accelerator"], r["density"], f"{r['top1']:.2f}", f"{r['agreement']:.1f}",
             "reference" if r["tier"].startswith("reference") else fmt(r["logit_sqnr_db"], ".1f"), r["tier"]]
            for r in results["runs"]]
    figs = results["figures"]
    return Section(
        "The student on every accelerator",
        ["Each preset runs every matrix product of the student through vitaccel.arith.emulated_matmul "
         f"({'exact=True: bit-identical to the golden model' if results['exact'] else 'exact=False where allowed'})"
         f"; integer presets are calibrated ({_calibration(results)}) on one batch of training images, "
         "held apart from the evaluated ones. fp32 is the reference: agreement is the "
         "fraction of top-1 predictions equal to its, SQNR compares the logits with its."],
        [(["accelerator", "density", "top-1 %", "agree %", "logit SQNR dB", "tier"], rows)],
        [(figs[k], cap) for k, cap in
         (("accuracy_vs_energy", "Estimated energy per image of every preset x density, top-1 at each point."),
          ("multiplier_errors", "Relative error of each truncating multiplier over all int8 activation "
                                "magnitudes (exact multipliers have none).")) if k in figs])


def _calibration(results: dict) -> str:
    """How integer presets were calibrated, in words (results of older runs: max, nothing else)."""
    em = results.get("emulation") or {}
    smooth = em.get("smooth")
    return f"{em.get('calib_method', 'max')}" + ("" if smooth is None else f", SmoothQuant alpha {smooth:g}")


def emulation_section(results: dict) -> Section | None:
    """Per accelerator but the float32 reference, which ops ran emulated (tier, operand scales) and
    which native (why), from the dense runs (``op_summary`` rows; None for results of runs that did
    not record them)."""
    rows = [[r["accelerator"], o["op"], o["kind"], str(o["count"]), o["tier"], o["scales"]]
            for r in results["runs"] if r["density"] == "dense" and not r["tier"].startswith("reference")
            for o in r.get("ops", [])]
    if not rows:
        return None
    em = results.get("emulation") or {}
    return Section(
        "What ran emulated, and how",
        [f"Op kinds emulated: {', '.join(em.get('ops') or []) or 'all (linear, conv2d, matmul, attention)'}; "
         f"integer presets with per-tensor activation scales calibrated with {_calibration(results)}. Ops alike "
         "but for their block number share a row (count). Scales: a = the activation, w = a weight (per output "
         "channel), b = an activation second operand (attention); per-token scales are computed on the fly from "
         "each row's max|x|. That needs a row-max unit (a max over K before quantising) and a per-row multiply "
         "at dequantisation: neither is in the circuits nor in the cost model, so per-token presets are costed "
         "as their per-tensor twins."],
        [(["accelerator", "op", "kind", "count", "tier", "scales (emulated) / why native"], rows)])


def cost_section(results: dict) -> Section:
    """Energy per image by part, with the multiplier and adder tree each row is charged for."""
    rows = [[r["accelerator"], r["density"], r["multiplier"], r["adder_tree"], f"{r['multiply_uj']:.3f}",
             f"{r['add_uj']:.3f}", f"{r['psum_uj']:.3f}", f"{r['operands_uj']:.3f}", f"{r['energy_uj']:.2f}",
             f"{r['psum_kb']:.1f}", f"{r['psum_ratio']:.2f}"] for r in results["runs"]]
    return Section(
        "Hardware cost (estimates)",
        [f"Per image, over the same {results['images']} validation images run one at a time. Energy table: "
         f"{results['provenance']['energy table']}. {results.get('energy_source', 'Energy source: the table.')} "
         "The multiplier column gives the operand widths the "
         "multiplier energy is scaled by (integer: the activation's magnitude bits after leading-one truncation, "
         "its sign handled apart, times the weight's bits); the adder-tree column the group size G and the width "
         "of its adds (float: wide enough for the products' exponent span unless align_bits is set). These are "
         "estimates; their assumptions:"],
        [(["accelerator", "density", "multiplier", "adder tree", "mult µJ", "add µJ", "psum µJ", "operands µJ",
           "energy µJ", "psum KB moved", "psum ratio"], rows)],
        lists=list(results["assumptions"]))


def circuits_section(results: dict) -> Section | None:
    """The synthesized circuits behind each preset (``vitaccel.viz.circuits``), when the run measured them."""
    return Section(**results["circuits"]) if "circuits" in results else None


SECTIONS: list[Callable[[dict], Section | None]] = [
    summary_section, provenance_section, density_section, accelerator_section, emulation_section, cost_section,
    circuits_section]
