"""calibrate(): the mse method, SmoothQuant migration (smooth=alpha) and per_token datapaths in runs."""

import pytest
import torch
import torch.nn as nn

from conftest import same_bits
from vitaccel.arith import emulated_matmul, intpath
from vitaccel.emulate import Backend, Calibration, EmulateError, calibrate, convert, emulate


class Outliers(nn.Module):
    """A linear layer whose input has one channel 100x louder than the others (as transformers do)."""

    def __init__(self, k=32, n=8):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(k, n)
        self.eval()

    def forward(self, x):
        return self.fc(x)


class Gram(nn.Module):
    def forward(self, h):
        return h @ h.transpose(-2, -1)


def data(seed, m=64, k=32):
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(seed))
    x[:, 3] *= 100.0
    return x


def squared_error(x, c, bits=8, table=None):
    """Squared error of symmetric quantisation of x with range c, written out independently."""
    m = 2 ** (bits - 1) - 1
    s = torch.tensor(c / m, dtype=torch.float32)
    q = torch.clamp(torch.round(x.double() / s.double()), -m, m)
    if table is not None:
        q = table[(q + m).long()].double()
    return float(((q * s.double()) - x.double()).square().sum())


def test_mse_picks_the_range_with_the_least_quantisation_error():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4000, 6, generator=g)
    x[0, 0, 0] = 60.0                                 # one outlier: clipping it pays
    model = nn.Sequential(nn.Linear(6, 4)).eval()
    for config, table in (("int8", None), ("int8-lot4", intpath.truncation_table(8, 4, "unbiased"))):
        c = calibrate(model, config, [x], method="mse").ranges["0"]["a"]
        top = float(x.abs().max())
        assert 0 < c < top
        err = squared_error(x.abs().flatten(), c, table=table)
        for other in (top, top * 0.5, c * 1.05, c * 0.95, float(torch.quantile(x.abs().flatten(), 0.9999))):
            assert err <= squared_error(x.abs().flatten(), other, table=table) * (1 + 1e-9), (config, other)


def test_mse_keeps_the_full_range_of_data_without_outliers():
    x = torch.linspace(-1, 1, 1001).reshape(1, -1, 1)
    model = nn.Linear(1, 2).eval()
    c = calibrate(model, "int8", [x], method="mse").ranges
    assert set(c) == {"Linear"} and c["Linear"]["a"] >= 0.95


def test_smoothing_factors_follow_the_formula_and_ranges_are_measured_after_them():
    model, xs = Outliers(), [data(1), data(2)]
    for alpha in (0.0, 0.5, 0.8, 1.0):
        cal = calibrate(model, "int8", xs, smooth=alpha)
        a_max = torch.cat(xs).abs().amax(0).double()
        w_max = model.fc.weight.detach().abs().amax(0).double()     # row k of b = weight^T is column k of W
        want = (a_max ** alpha / w_max ** (1 - alpha)).float()
        assert torch.allclose(cal.factors["fc"], want, rtol=1e-6)
        assert cal.ranges["fc"]["a"] == pytest.approx(float((torch.cat(xs) / cal.factors["fc"]).abs().max()))
    assert cal.smooth_factors("fc") is cal.factors["fc"]


def test_smoothing_changes_nothing_beyond_rounding_on_the_float32_path():
    """A float32 'integer' backend (scales ignored): smoothing moves range, the output stays."""
    model, x = Outliers(), data(5)
    seen = []

    def matmul(a, b, *, a_scale=None, b_scale=None):
        seen.append(a)
        return a @ b
    backend = Backend("f32", "int", matmul, qmax=127)
    cal = calibrate(model, backend, [data(4)], smooth=0.5)
    assert (cal.factors["fc"] - 1).abs().max() > 0.5      # it really migrates
    with torch.no_grad(), emulate(model, backend, calibration=cal, stats=False):
        got = model(x)
    assert same_bits(seen[0], x / cal.factors["fc"])
    with torch.no_grad():
        ref = model(x)
    tol = 1e-5 * (x.abs() @ model.fc.weight.detach().abs().t()).max()
    assert float((got - ref).abs().max()) <= tol


def test_smoothing_helps_int8_on_outlier_channels():
    model, calib, test = Outliers(), [data(7), data(8)], data(9)
    errs = {}
    with torch.no_grad():
        ref = model(test)
    for smooth in (None, 0.5):
        calibrate(model, "int8", calib, smooth=smooth)
        with torch.no_grad(), emulate(model, "int8", stats=False) as run:
            errs[smooth] = float((model(test) - ref).square().mean())
        assert ("smooth 0.5" in run.report().ops[0].scales) == (smooth is not None)
    assert errs[0.5] < errs[None] / 2


def test_per_pattern_smoothing_and_the_report_says_which_scales():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    x = torch.randn(16, 8)
    cal = calibrate(model, "int8", [x], smooth={"2": 0.6}, method="mse")
    assert set(cal.factors) == {"2"} and cal.smooth_factors("0") is None
    with torch.no_grad(), emulate(model, "int8") as run:
        model(x)
    scales = {r.name: r.scales for r in run.report().ops}
    assert scales == {"0": "a per-tensor mse, w per-channel", "2": "a per-tensor mse, w per-channel, smooth 0.6"}
    assert "smooth 0.6" in run.report().table()


def test_per_token_datapaths_need_no_calibration_and_scale_each_row():
    model = nn.Linear(24, 5).eval()
    x = torch.randn(7, 24) * torch.logspace(-3, 1, 7).unsqueeze(1)
    with torch.no_grad(), emulate(model, "int8-dyn") as run:
        y = model(x)
    want = emulated_matmul(x, model.weight.detach().t(), "int8-dyn") + model.bias.detach()
    assert same_bits(y, want)
    assert run.report().ops[0].scales == "a per-token dynamic, w per-channel"
    h, gram = torch.randn(2, 5, 8), Gram()
    with torch.no_grad(), emulate(gram, "int8-lot4-dyn") as run:   # an activation @ activation product
        got = gram(h)
    assert same_bits(got, emulated_matmul(h, h.transpose(-2, -1), "int8-lot4-dyn"))
    assert run.report().ops[0].scales == "a per-token dynamic, b per-column dynamic"


def test_bad_alpha_nan_data_and_unseen_ops_are_named():
    model = Outliers()
    for bad in (1.5, -0.1, "0.5", True, float("nan")):
        with pytest.raises(EmulateError, match=rf"smooth: alpha {bad!r} is not allowed; a number in \[0, 1\]"):
            calibrate(model, "int8", [data(1)], smooth=bad)
    with pytest.raises(EmulateError, match=r"smooth\['fc\*'\]: alpha 2 is not allowed"):
        calibrate(model, "int8", [data(1)], smooth={"fc*": 2})
    bad_x = data(1)
    bad_x[3, 5] = float("inf")
    with pytest.raises(EmulateError, match="op 'fc' saw NaN or inf in operand 'a'"):
        calibrate(model, "int8-dyn", [bad_x], smooth=0.5)
    with pytest.raises(EmulateError, match="op 'fc' saw NaN or inf in operand 'a'"):
        calibrate(model, "int8", [bad_x], method="mse")
    cal = Calibration("max", 99.99, {}, smooth=0.5)                 # smoothing asked, op never seen
    with pytest.raises(EmulateError, match=r"op 'fc': smooth=0.5 applies to it but the calibration batches did "
                                           "not run this op"):
        with torch.no_grad(), emulate(model, "int8-dyn", calibration=cal):
            model(data(2))
    with pytest.raises(EmulateError, match="per_tensor activation scales, which need calibrating"):
        convert(nn.Linear(2, 2), "int8")


def test_evaluate_holds_calibration_batches_apart():
    from vitaccel.emulate import evaluate

    model = Outliers()
    xs = [data(i) for i in range(4)]
    report = evaluate(model, "int8", xs, calib_batches=1, calib_method="mse", smooth=0.5)
    assert report.forwards == 3                                    # the first batch only calibrated
    with pytest.raises(EmulateError, match=r"batches: none left to evaluate after the 4 calibration batch"):
        evaluate(model, "int8", xs, calib_batches=4)
    report = evaluate(model, "int8-dyn", xs, calib_batches=2, calib_data=[data(9)])
    assert report.forwards == 4 and report.ops[0].scales == "a per-token dynamic, w per-channel"


def test_evaluate_replaces_an_earlier_smoothed_calibration():
    from vitaccel.emulate import evaluate

    model, xs = Outliers(), [data(i) for i in range(3)]
    calibrate(model, "int8", xs, smooth=0.5)
    report = evaluate(model, "int8-dyn", xs, calib_batches=1)
    assert report.ops[0].scales == "a per-token dynamic, w per-channel"
