"""Exported Verilog + golden vectors + self-checking bench: passes in Icarus Verilog, fails when one
expected vector is corrupted; the ``vitaccel hw export`` command."""

import shutil
import subprocess

import pytest

from hw_helpers import circuit_presets
from vitaccel.arith import AcceleratorConfig
from vitaccel.hw.export import export

CIRCUIT_PRESETS = circuit_presets()
FAST = ("int8-lot4-psum", "fp13", "mxfp8")
needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("vvp") is None,
                                  reason="iverilog/vvp not on PATH: install Icarus Verilog (Debian: iverilog) "
                                         "to run the exported test benches")


def run_bench(folder) -> subprocess.CompletedProcess:
    compile_ = subprocess.run(["iverilog", "-g2012", "-o", "tb.vvp", "tb_dot_unit.v", "dot_unit.v"], cwd=folder,
                              capture_output=True, text=True)
    assert compile_.returncode == 0, compile_.stderr
    return subprocess.run(["vvp", "-n", "tb.vvp"], cwd=folder, capture_output=True, text=True)


@needs_icarus
@pytest.mark.parametrize("name", [pytest.param(p, marks=() if p in FAST else pytest.mark.slow)
                                  for p in CIRCUIT_PRESETS])
def test_exported_bench_passes_and_catches_a_corrupted_vector(name, tmp_path):
    done = export(name, tmp_path)
    assert "iverilog -g2012 -o tb.vvp tb_dot_unit.v dot_unit.v && vvp tb.vvp" in (tmp_path / "README.md").read_text()
    assert all(f.exists() for f in done.files) and list((tmp_path / "elements").glob("*.v"))
    for element in (tmp_path / "elements").glob("*.v"):             # every element compiles on its own
        built = subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "el.vvp"), str(element)],
                               capture_output=True, text=True)
        assert built.returncode == 0, (element.name, built.stderr)
    benches = sorted((tmp_path / "benches").iterdir())
    assert {b.name for b in benches} >= ({"int_lane", "int_tree", "accumulator"} if name.startswith("int")
                                         else {"acc_add"})
    for bench in benches:                                            # every element's own bench
        built = subprocess.run(["iverilog", "-g2012", "-o", "tb.vvp", "tb.v", f"{bench.name}_packed.v"], cwd=bench,
                               capture_output=True, text=True)
        assert built.returncode == 0, built.stderr
        run = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=bench, capture_output=True, text=True)
        assert run.returncode == 0 and "PASS" in run.stdout, (bench.name, run.stdout, run.stderr)
        lines = (bench / "expected.hex").read_text().splitlines()            # one wrong vector fails it
        lines[-1] = lines[-1][:-1] + ("1" if lines[-1][-1] == "0" else "0")
        (bench / "expected.hex").write_text("\n".join(lines) + "\n")
        bad = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=bench, capture_output=True, text=True)
        assert bad.returncode != 0 and f"FAIL: vector {len(lines) - 1}:" in bad.stdout, (bench.name, bad.stdout)
    ok = run_bench(tmp_path)
    assert ok.returncode == 0 and f"PASS: {done.vectors} vectors" in ok.stdout, ok.stdout + ok.stderr
    lines = (tmp_path / "expected.hex").read_text().splitlines()
    k = len(lines) // 2
    flipped = "1" if lines[k][-1] == "0" else "0"
    lines[k] = lines[k][:-1] + flipped
    (tmp_path / "expected.hex").write_text("\n".join(lines) + "\n")
    bad = run_bench(tmp_path)
    assert bad.returncode != 0 and f"FAIL: vector {k}:" in bad.stdout, bad.stdout + bad.stderr


def test_cli_export_and_refusal(tmp_path, capsys):
    from vitaccel.cli import main
    assert main(["hw", "export", "--accelerator", "int8", "--out", str(tmp_path / "int8")]) == 0
    assert (tmp_path / "int8" / "tb_dot_unit.v").exists()
    assert main(["hw", "export", "--accelerator", "fp32", "--out", str(tmp_path / "fp32")]) == 2
    assert "datapath: value 'native' is not allowed for the circuits" in capsys.readouterr().err


@needs_icarus
def test_exported_bench_of_a_narrow_accumulator_passes(tmp_path):
    """A bfloat16 accumulator: 16-bit ``o``, golden accumulators in its bits, Icarus passes."""
    config = AcceleratorConfig.from_dict({"name": "fp13-bf16acc", "datapath": "float",
                                          "float_datapath": {"accumulator": "bf16", "group_size": 4}})
    done = export(config, tmp_path)
    assert "16 bits: bits of the bf16 accumulator" in (tmp_path / "README.md").read_text()
    assert {len(line) for line in (tmp_path / "expected.hex").read_text().split()} == {4}
    ok = run_bench(tmp_path)
    assert ok.returncode == 0 and f"PASS: {done.vectors} vectors" in ok.stdout, ok.stdout + ok.stderr
    bench = tmp_path / "benches" / "acc_add"
    built = subprocess.run(["iverilog", "-g2012", "-o", "tb.vvp", "tb.v", "acc_add_packed.v"], cwd=bench,
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    run = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=bench, capture_output=True, text=True)
    assert run.returncode == 0 and "PASS" in run.stdout, run.stdout
