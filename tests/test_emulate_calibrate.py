"""calibrate(): activation ranges per product, methods max and percentile, use by integer datapaths."""

import pytest
import torch
import torch.nn as nn

from vitaccel.emulate import Backend, Calibration, EmulateError, calibrate, calibration_of, convert, emulate, restore


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.eval()

    def forward(self, x, scale=1.0):
        h = self.fc(x) * scale
        return h @ h.transpose(-2, -1)


def batches(n=3):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 5, 6, generator=g) * (i + 1) for i in range(n)]


def int_double():
    """An integer datapath stand-in that records the scales it is given."""
    seen = []

    def matmul(a, b, *, a_scale=None, b_scale=None):
        seen.append((a_scale, b_scale))
        return a @ b
    return Backend("int-test", "int", matmul, qmax=127), seen


def test_max_method_records_the_largest_magnitude_of_each_activation_operand():
    model, data = Net(), batches()
    cal = calibrate(model, "fp13", data)
    with torch.no_grad():
        h = torch.cat([model.fc(x) for x in data])
    assert cal.method == "max" and set(cal.ranges) == {"fc", "matmul0"}
    assert cal.ranges["fc"] == {"a": max(x.abs().max().item() for x in data)}  # weights: no range
    assert cal.ranges["matmul0"]["a"] == pytest.approx(h.abs().max().item())
    assert cal.ranges["matmul0"]["b"] == pytest.approx(h.abs().max().item())
    assert calibration_of(model) is cal


def test_percentile_method_clips_outliers():
    model = Net()
    x = torch.randn(1, 100, 6, generator=torch.Generator().manual_seed(1))
    x[0, 0, 0] = 1000.0
    cal = calibrate(model, "fp13", [x], method="percentile", percentile=99.0)
    assert cal.ranges["fc"]["a"] == pytest.approx(torch.quantile(x.abs().flatten(), 0.99).item())
    assert cal.ranges["fc"]["a"] < 10


def test_batches_may_be_tensors_tuples_or_dicts():
    x, model = batches(1)[0], Net()
    ranges = [calibrate(model, "fp13", [b]).ranges for b in (x, (x, 2.0), {"x": x, "scale": 2.0})]
    assert ranges[1] == ranges[2] and ranges[1]["fc"] == ranges[0]["fc"]
    assert ranges[1]["matmul0"]["a"] == pytest.approx(2 * ranges[0]["matmul0"]["a"])
    with pytest.raises(TypeError, match="batch: expected a tensor"):
        calibrate(Net(), "fp13", [3.0])


def test_integer_datapath_gets_calibrated_per_tensor_scales():
    model, data = Net(), batches()
    cal = calibrate(model, "fp13", data)
    backend, seen = int_double()
    with torch.no_grad(), emulate(model, backend, stats=False):
        model(data[0])
    (fc_a, fc_b), (mm_a, mm_b) = seen
    assert fc_b is None  # weights: per output channel, from the weights themselves
    assert fc_a.dim() == 0 and fc_a.dtype == torch.float32
    assert fc_a.item() == pytest.approx(cal.ranges["fc"]["a"] / 127)
    assert mm_b.item() == pytest.approx(cal.ranges["matmul0"]["b"] / 127)


def test_explicit_calibration_and_missing_ops_name_the_op():
    model = Net()
    backend, _ = int_double()
    cal = Calibration("max", 99.99, {"fc": {"a": 1.0}})
    with pytest.raises(EmulateError, match="op 'matmul0': no calibrated range"):
        with emulate(model, backend, calibration=cal):
            model(batches(1)[0])


def test_calibration_errors():
    model = Net()
    with pytest.raises(EmulateError, match="method: 'mean' is not allowed"):
        calibrate(model, "fp13", batches(), method="mean")
    with pytest.raises(EmulateError, match="percentile: 0 is not allowed"):
        calibrate(model, "fp13", batches(), method="percentile", percentile=0)
    with pytest.raises(EmulateError, match="no batch given"):
        calibrate(model, "fp13", [])
    with pytest.raises(EmulateError, match="no capturable matrix product"):
        calibrate(nn.ReLU(), "fp13", batches())
    convert(model, "fp13")
    with pytest.raises(EmulateError, match="restore\\(model\\) before calibrating"):
        calibrate(model, "fp13", batches())
    restore(model)


def test_calibration_leaves_the_model_unchanged():
    model = Net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out = model(batches(1)[0])
    calibrate(model, "fp13", batches())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert torch.equal(model(batches(1)[0]), out)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("method", ["max", "percentile"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_calibration_data_is_refused_naming_the_op(method, bad):
    model, data = Net(), batches()
    data[1][0, 2, 3] = bad
    with pytest.raises(EmulateError, match=r"op 'fc' saw NaN or inf in operand 'a' during calibration"):
        calibrate(model, "int8", data, method=method)
    assert calibration_of(model) is None  # nothing kept


def test_non_finite_intermediate_activations_name_their_op():
    model = Net()
    with pytest.raises(EmulateError, match=r"op 'matmul0' saw NaN or inf in operand 'a'"):
        calibrate(model, "int8", [(x, float("inf")) for x in batches(1)])
