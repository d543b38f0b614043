"""convert/restore, options, errors, the report, unsupported ops: on small models."""

import json

import pytest
import torch
import torch.nn as nn

import vitaccel.emulate
from test_emulate_helpers import tiny_vit
from vitaccel.configtools import ConfigError
from vitaccel.emulate import Backend, EmulateError, convert, converted, emulate, restore


class Tiny(nn.Module):
    """A linear layer, a conv and a functional matmul between activations."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Linear(16, 5)
        self.eval()

    def forward(self, x):
        h = self.conv(x).flatten(2)          # (N, 4, 16)
        h = h @ h.transpose(1, 2) @ h         # activation x activation
        return self.fc(h).mean(1)


def snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()])


def same(model, snap):
    state, hooks = snap
    return (all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
            and hooks == [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()])


def x():
    return torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))


def test_module_is_callable_as_in_the_design():
    model = Tiny()
    with vitaccel.emulate(model, "fp13") as run:
        model(x())
    assert converted(model) is False and len(run.report().ops) == 4


def test_convert_then_restore_is_bit_identical():
    model = Tiny()
    snap, before = snapshot(model), model(x())
    run = convert(model, "fp13", exact=False)
    assert converted(model)
    emulated = model(x())
    assert not torch.equal(emulated, before)
    assert restore(model) is model and not converted(model)
    assert same(model, snap) and torch.equal(model(x()), before)
    assert run.report().forwards == 1


def test_op_names_and_shapes():
    model = Tiny()
    with torch.no_grad(), emulate(model, "fp13") as run:
        model(x())
    rows = {r.name: r for r in run.report().ops}
    assert list(rows) == ["conv", "matmul0", "matmul1", "fc"]
    assert rows["conv"].shape == "3x16x18 @ 18x4" and rows["conv"].kind == "conv2d"
    assert rows["matmul0"].shape == "3x4x16 @ 3x16x4"


def test_options_choose_what_runs_native_and_list_it():
    model = Tiny()
    with torch.no_grad(), emulate(model, "fp13", ops=("linear", "conv2d"), skip=("conv",)) as run:
        model(x())
    report = run.report()
    assert [r.name for r in report.ops] == ["fc"]
    reasons = {r.name: r.reason for r in report.native}
    assert reasons == {"conv": "skipped by pattern 'conv'", "matmul0": "op kind 'matmul' not in ops",
                       "matmul1": "op kind 'matmul' not in ops"}


def test_non_float32_operands_run_native_and_are_listed():
    model = Tiny().double()
    with torch.no_grad(), emulate(model, "fp13") as run:
        out = model(x().double())
    assert out.dtype == torch.float64 and not run.report().ops
    assert {r.reason for r in run.report().native} == {"dtype torch.float64 (only float32 runs emulated)"}


def test_unsupported_matrix_ops_are_listed_with_a_warning():
    class Einsum(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, a):
            return torch.einsum("ij,jk->ik", self.fc(a), a.t())
    model = Einsum()
    with pytest.warns(UserWarning, match="einsum .* has no emulation"), torch.no_grad(), \
            emulate(model, "fp13") as run:
        model(torch.randn(4, 4))
    assert [(r.name, r.reason) for r in run.report().native] == [("einsum0", "no emulation for einsum")]


def test_multihead_attention_is_not_silently_native():
    model = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True).eval()
    with pytest.warns(UserWarning, match="has no emulation"), torch.no_grad(), emulate(model, "fp13") as run:
        model(torch.randn(2, 3, 8))
    assert any("attention" in r.kind for r in run.report().native)


def test_report_table_json_and_accuracy():
    model = tiny_vit()
    images = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), emulate(model, "fp13", exact=False) as run:
        preds = [model(im).argmax(-1) for im in images]
    labels = [preds[0], torch.zeros(4, dtype=torch.long)]
    report = run.report(labels=labels)
    assert report.forwards == 2 and 20 < report.output_sqnr_db < 80
    assert report.accuracy == pytest.approx(((torch.cat(labels) == torch.cat(preds)).float().mean()).item())
    assert 0.5 <= report.agreement <= 1.0
    text = report.table()
    assert "blocks.1.attn.sdpa0.qk" in text and "SQNR" in text and "top-1 accuracy" in text
    data = json.loads(report.to_json())
    assert data["accelerator"] == "fp13" and data["tier"] == "fast" and len(data["ops"]) == 2 * 6 + 2
    assert set(data["ops"][0]) == {"name", "kind", "shape", "calls", "tier", "exact", "sqnr_db", "max_rel_err",
                                     "scales"}
    with pytest.raises(EmulateError, match="labels: shape"):
        run.report(labels=torch.zeros(3, dtype=torch.long))


def test_report_json_writes_non_finite_numbers_as_strings(tmp_path):
    model = Tiny()
    with emulate(model, "fp32") as run:
        model(x())
    path = tmp_path / "r.json"
    run.report().to_json(path)
    data = json.loads(path.read_text())
    assert data["output_sqnr_db"] == "inf" and data["ops"][0]["sqnr_db"] == "inf"


def test_stats_off_measures_nothing():
    model = Tiny()
    with emulate(model, "fp13", stats=False) as run:
        model(x())
    report = run.report()
    assert report.forwards == 0 and all(r.sqnr_db is None for r in report.ops)
    assert "not compared" in report.table()


def test_reset_forgets_records():
    model = Tiny()
    with emulate(model, "fp13") as run:
        model(x())
        run.reset()
    assert not run.report().ops and run.report().forwards == 0


# -- bad input: clear errors, model unchanged ------------------------------------------------------

def test_model_with_no_capturable_op_is_an_error_and_is_left_unchanged():
    model = nn.Sequential(nn.ReLU(), nn.LayerNorm(4))
    snap = snapshot(model)
    with pytest.raises(EmulateError, match="no capturable matrix product"):
        with emulate(model, "fp13"):
            model(torch.randn(2, 4))
    assert not converted(model) and same(model, snap)
    convert(model, "fp13")
    with pytest.raises(EmulateError, match="Sequential ran no capturable"):
        model(torch.randn(2, 4))
    assert not converted(model) and same(model, snap)


def test_invalid_config_file_is_an_error_and_model_unchanged(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndatapath: float\nfloat_datapath:\n  group_size: 12\n")
    model = Tiny()
    snap = snapshot(model)
    with pytest.raises(ConfigError, match="group_size"):
        convert(model, str(bad))
    with pytest.raises(ConfigError, match="preset 'nope' is unknown"):
        convert(model, "nope")
    with pytest.raises(TypeError, match="config: expected"):
        convert(model, 13)
    assert not converted(model) and same(model, snap)


def test_bad_options_name_the_option():
    model = Tiny()
    with pytest.raises(ConfigError, match="grad: value 'sgd' is not allowed"):
        convert(model, "fp13", grad="sgd")
    with pytest.raises(ConfigError, match="ops: value .* unknown op kinds \\['conv3d'\\]"):
        convert(model, "fp13", ops=["conv3d"])
    with pytest.raises(ConfigError, match="speed: unknown key"):
        convert(model, "fp13", speed=2)
    assert not converted(model)


def test_double_convert_and_restoring_an_unconverted_model_are_errors():
    model = Tiny()
    with emulate(model, "fp13"):
        with pytest.raises(EmulateError, match="already converted"):
            convert(model, "fp13")
    with pytest.raises(EmulateError, match="not converted"):
        restore(model)


@pytest.mark.parametrize("config", ["int8", Backend("int8-test", "int", lambda a, b, **kw: a @ b, qmax=127)])
def test_integer_datapath_without_calibration_is_an_error(config):
    model = Tiny()
    snap = snapshot(model)
    with pytest.raises(EmulateError, match="integer datapath.*calibrate\\(model, config, batches\\)"):
        convert(model, config)
    assert not converted(model) and same(model, snap)


def test_backward_without_ste_is_an_error_not_a_partial_gradient():
    model = Tiny()
    with emulate(model, "fp13"):
        out = model(x())
    with pytest.raises(EmulateError, match="grad='ste'"):
        out.sum().backward()
