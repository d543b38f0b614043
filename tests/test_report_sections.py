"""The report's structure (issue 17): summary first, provenance, one value per quantity, fp32 the
reference, the widths behind every energy row, lists as HTML lists."""

import re

import pytest

from vitaccel.viz.report import Section, to_html, to_markdown
from vitaccel.viz.sections import SECTIONS, summary_rows


def _run(acc: str, density: str, top1: float, macs: float, energy: float, tier: str) -> dict:
    return {"accelerator": acc, "density": density, "top1": top1, "agreement": 100.0, "logit_sqnr_db": 30.0,
            "tier": tier, "macs": macs, "multiplier": f"{acc} mult", "adder_tree": f"{acc} tree",
            "multiply_uj": energy / 2, "add_uj": energy / 4, "psum_uj": energy / 8, "operands_uj": energy / 8,
            "energy_uj": energy, "psum_kb": 1.0, "psum_ratio": 1.0}


def _results() -> dict:
    runs = [_run("fp32", "dense", 98.0, 16e6, 80.0, "reference (float32)"),
            _run("fp32", "mass=0.8", 97.5, 11e6, 55.0, "reference (float32)"),
            _run("int8", "dense", 97.9, 16e6, 9.0, "fast (bit-exact)"),
            _run("int8", "mass=0.8", 95.0, 11e6, 6.0, "fast (bit-exact)")]
    return {"provenance": {"model": "m", "energy table": "45 nm"}, "accelerators": ["fp32", "int8"],
            "reference": "fp32", "exact": True, "images": 10, "assumptions": ["first assumption", "second"],
            "figures": {}, "runs": runs,
            "densities": [{"density": "dense", "top1": 98.0, "kept": 64, "kept_std": 0, "macs": 16e6,
                           "macs_ratio": 1.0},
                          {"density": "mass=0.8", "top1": 97.5, "kept": 35, "kept_std": 1, "macs": 11e6,
                           "macs_ratio": 11 / 16}]}


def test_summary_comes_first_with_a_three_line_answer_and_the_combined_table():
    sections = [s for make in SECTIONS if (s := make(_results())) is not None]
    assert [s.title for s in sections[:2]] == ["Summary", "Provenance"]
    summary = sections[0]
    assert summary.text[0].startswith("For this model") and len(summary.text) == 5
    assert summary.text[1].startswith("Tokens: at mass=0.8")
    assert summary.text[2].startswith("Arithmetic: int8 at dense takes 9.00 µJ per image, 11.2% of fp32 dense")
    # int8 at mass=0.8 is cheaper but 3 pt worse: "both" picks the cheapest run within 1 pt
    assert summary.text[3].startswith("Both: int8 at dense") or summary.text[3].startswith("Both: fp32 at mass=0.8")
    assert summary.tables[0] == summary_rows(_results())


def test_every_energy_row_shows_its_multiplier_and_adder_tree_and_fp32_is_the_reference():
    sections = {s.title: s for s in (make(_results()) for make in SECTIONS) if s is not None}
    (header, rows), = sections["Hardware cost (estimates)"].tables
    assert header[2:4] == ["multiplier", "adder tree"]
    assert all(r[2] == f"{r[0]} mult" and r[3] == f"{r[0]} tree" for r in rows)
    (header, rows), = sections["The student on every accelerator"].tables
    assert [r[4] for r in rows if r[0] == "fp32"] == ["reference", "reference"]
    assert not any("not exact" in str(c) for r in rows for c in r)


def test_one_value_per_quantity_macs_agree_across_tables():
    results = _results()
    md = to_markdown("t", [s for make in SECTIONS if (s := make(results)) is not None])
    macs = set(re.findall(r"\| mass=0\.8 \| [\d.]+ \| [\d.]+ ± [\d.]+ \| ([\d.]+) \|", md))
    macs |= {r[3] for r in summary_rows(results)[1] if r[1] == "mass=0.8"}
    assert macs == {"11.00"}


def test_lists_render_as_html_lists():
    page = to_html("t", [Section("s", ["intro"], lists=["a < b", "c"])])
    assert "<ul><li>a &lt; b</li><li>c</li></ul>" in page
    assert "- a < b\n- c" in to_markdown("t", [Section("s", ["intro"], lists=["a < b", "c"])])


@pytest.mark.slow  # about a minute on a shared 2-core CPU
def test_report_command_end_to_end_on_a_small_checkpoint(tmp_path, capsys):
    import csv
    import json

    from test_cli_errors import _checkpoint
    from vitaccel.cli import main

    ckpt = _checkpoint(tmp_path / "s.pt")
    out = tmp_path / "rep"
    argv = ["report", "--checkpoint", str(ckpt), "--accelerators", "fp32,int8", "--values", "0.5",
            "--rule", "topk", "--max-images", "16", "--out", str(out)]
    assert main(argv) == 0
    assert f"in {out}/" in capsys.readouterr().out                     # says where it wrote
    results = json.loads((out / "results.json").read_text())
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["accelerator"], r["density"]) for r in rows] == \
        [(r["accelerator"], r["density"]) for r in results["runs"]] == \
        [("fp32", "dense"), ("fp32", "topk=0.5"), ("int8", "dense"), ("int8", "topk=0.5")]
    macs = {d["density"]: d["macs"] for d in results["densities"]}
    assert all(abs(r["macs"] - macs[r["density"]]) <= 1 for r in results["runs"])  # one value per quantity
    md = (out / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Provenance") < md.index("## Hardware cost")
    assert all((out / f).is_file() for f in results["figures"].values()) and len(results["figures"]) == 3
    assert main(argv) == 0                                               # its own folder: rewritten
