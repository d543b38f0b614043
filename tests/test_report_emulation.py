"""``vitaccel report``'s calibration keys (calib_method, smooth, ops) and its per-op account of what
ran emulated, with which scales: on an untrained 16 px pico ViT and a few digits images."""

import dataclasses

import pytest

from test_cli_errors import _checkpoint
from vitaccel.cli import main
from vitaccel.commands import report as report_cmd
from vitaccel.commands.report import Emulation, accelerator_runs, executed_shapes, load_student
from vitaccel.emulate import evaluate
from vitaccel.viz.sections import SECTIONS, emulation_section


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    ckpt = _checkpoint(tmp_path_factory.mktemp("ckpt") / "s.pt")
    return load_student(ckpt, {}, max_images=8, batch_size=8)


def test_report_cli_passes_the_calibration_keys_on(student, tmp_path, monkeypatch):
    seen = {}

    def compute(student_, out_dir, accelerators, densities, **kwargs):
        seen.update(kwargs, accelerators=accelerators)
        raise SystemExit(0)   # the keys arrived: skip the long stages

    monkeypatch.setattr(report_cmd, "compute_results", compute)
    with pytest.raises(SystemExit):
        main(["report", "--checkpoint", str(student.checkpoint), "--accelerators", "int8", "--out",
              str(tmp_path / "r"), "--calib-method", "percentile", "--smooth", "0.25", "--ops", "linear,matmul"])
    assert seen["emulation"] == Emulation("percentile", 0.25, ("linear", "matmul"))
    with pytest.raises(SystemExit):
        main(["report", "--checkpoint", str(student.checkpoint), "--out", str(tmp_path / "r2")])
    assert seen["emulation"] == Emulation()                              # defaults: max, no smoothing, every op
    assert seen["emulation"].options() == {"calib_method": "max", "smooth": None}


def test_runs_record_per_op_what_was_emulated_and_how(student):
    settings = [("dense", None)]
    shapes = executed_shapes(student, settings)
    from vitaccel.measure.hardware import EnergyTable

    emulation = Emulation("mse", 0.5, ("linear",))
    runs = accelerator_runs(student, ["int8", "int8-lot4n-dyn"], settings, shapes, EnergyTable.load(None),
                            exact=True, emulation=emulation)
    by_acc = {r["accelerator"]: {o["op"]: o for o in r["ops"]} for r in runs}
    qkv = by_acc["int8"]["blocks.*.attn.qkv"]
    assert qkv == {"op": "blocks.*.attn.qkv", "kind": "linear", "emulated": True, "tier": "fast (bit-exact)",
                   "scales": "a per-tensor mse, w per-channel, smooth 0.5", "count": 2}
    assert by_acc["int8-lot4n-dyn"]["blocks.*.attn.qkv"]["scales"] == "a per-token dynamic, w per-channel, smooth 0.5"
    native = by_acc["int8"]["blocks.*.attn.sdpa0"]
    assert not native["emulated"] and native["scales"] == "op kind 'attention' not in ops"
    # the same numbers as evaluate() with those options
    direct = evaluate(student.model, "int8", student.loader, calib_batches=1, calib_data=student.calib,
                      calib_method="mse", smooth=0.5, ops=("linear",))
    assert runs[0]["top1"] == 100 * direct.accuracy

    results = {"runs": runs, "emulation": dataclasses.asdict(emulation)}
    section = emulation_section(results)
    assert section.title == "What ran emulated, and how" and "Op kinds emulated: linear;" in section.text[0]
    assert "calibrated with mse, SmoothQuant alpha 0.5" in section.text[0]
    assert "row-max unit" in section.text[0] and "neither is in the circuits nor in the cost model" in section.text[0]
    (header, rows), = section.tables
    assert ["int8", "blocks.*.attn.qkv", "linear", "2", "fast (bit-exact)",
            "a per-tensor mse, w per-channel, smooth 0.5"] in rows
    assert emulation_section({"runs": [{**runs[0], "ops": []}]}) is None  # nothing recorded: no section
    assert emulation_section({"runs": [{**runs[0], "tier": "reference (float32)"}]}) is None  # fp32: nothing to say
    assert emulation_section in SECTIONS
