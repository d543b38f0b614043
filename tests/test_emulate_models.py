"""Whole models vitaccel did not write: timm DeiT (fused attention), torchvision ResNet-18, HF BERT."""

import pytest
import torch
import torch.nn as nn

import vitaccel.emulate
from test_emulate_helpers import FAMILIES, MatmulCounter, family, main_output, spy_backend
from vitaccel.arith import AcceleratorConfig, emulated_matmul
from vitaccel.emulate import calibrate


def forward(model, args, kwargs):
    with torch.no_grad():
        return main_output(model(*args, **kwargs))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_fp32_preset_output_equals_the_unconverted_model_exactly(name):
    model, args, kwargs = family(name)
    before = forward(model, args, kwargs)
    with vitaccel.emulate(model, "fp32") as run:
        during = forward(model, args, kwargs)
    assert torch.equal(during, before)
    report = run.report()
    assert report.ops and all(r.tier == "native" and r.sqnr_db == float("inf") for r in report.ops)
    assert report.output_sqnr_db == float("inf") and not report.native


SLOW = ("torchvision-resnet18", "int8-lot4-psum")  # about a minute on 2 cores
PRODUCT_CASES = [pytest.param(name, config, marks=[pytest.mark.slow] if (name, config) == SLOW else [])
                 for name in FAMILIES for config in ("fp13", "int8-lot4-psum")]


@pytest.mark.parametrize("name,config", PRODUCT_CASES)
def test_every_product_is_emulated_matmul_and_none_runs_native(name, config):
    """Each product the model runs goes through the backend, whose result equals a fresh
    emulated_matmul on the same operands; no aten matrix product runs anywhere else."""
    model, args, kwargs = family(name)
    reference = forward(model, args, kwargs)
    if AcceleratorConfig.preset(config).datapath == "int":
        calibrate(model, config, [kwargs] if kwargs else [args])
    counter = MatmulCounter()
    backend, calls = spy_backend(config, exact=False, counter=counter)
    with counter:
        forward(model, args, kwargs)
    native_products = counter.count
    counter.count = 0
    with vitaccel.emulate(model, backend, stats=False) as run, counter:
        out = forward(model, args, kwargs)
    assert native_products > 0 and counter.count == 0, counter.names
    report = run.report()
    assert not report.native
    assert len(calls) == sum(r.calls for r in report.ops) >= native_products
    cfg = AcceleratorConfig.preset(config)
    for a, b, a_scale, b_scale, got in calls:
        assert torch.equal(got, emulated_matmul(a, b, cfg, False, a_scale=a_scale, b_scale=b_scale))
    assert not torch.equal(out, reference)  # the accelerator changes the output ...
    sqnr = 10 * torch.log10(reference.pow(2).sum() / (out - reference).pow(2).sum())
    assert sqnr > (30 if config == "fp13" else 8)  # ... but not beyond recognition


@pytest.mark.parametrize("config", ["fp13", "int8-lot4"])
def test_linear_and_conv_outputs_equal_emulated_matmul_of_their_inputs(config):
    """Module level, exact tiers: y = emulated_matmul(x, W^T) + b, conv as im2col of its input;
    integer datapaths with the calibrated activation scale and per-channel weight scales."""
    model, (x,), _ = family("timm-deit")
    cal = calibrate(model, config, [x])
    seen = {}

    def keep(module, inputs, output):
        seen[module] = (inputs[0].clone(), output.clone())
    handles = [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    # stats=False: no float32 reference pass, which would run the hooks a second time
    with torch.no_grad(), vitaccel.emulate(model, config, exact=True, stats=False) as run:
        model(x)
    for h in handles:
        h.remove()
    assert all(r.exact for r in run.report().ops)
    names = {m: n for n, m in model.named_modules()}
    qmax = 127
    with torch.no_grad():  # the emulator calls emulated_matmul on detached operands too
        for module, (inp, out) in seen.items():
            scale = {}
            if config.startswith("int"):
                scale = {"a_scale": torch.tensor(cal.ranges[names[module]]["a"] / qmax)}
            if isinstance(module, nn.Linear):
                expected = emulated_matmul(inp, module.weight.t(), config, True, **scale) + module.bias
            else:
                cols = nn.functional.unfold(inp, module.kernel_size, stride=module.stride).transpose(1, 2)
                y = emulated_matmul(cols, module.weight.flatten(1).t(), config, True, **scale) + module.bias
                expected = y.transpose(1, 2).reshape(out.shape)
            assert torch.equal(out, expected), names[module]
    assert len(seen) == 2 * 4 + 2


def test_attention_equals_softmax_between_two_emulated_matmuls():
    q, k, v = torch.randn(3, 2, 2, 5, 8).unbind(0)
    mask = torch.rand(5, 5) > 0.3

    class Attn(nn.Module):
        def forward(self, q, k, v):
            return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    model = Attn()
    with vitaccel.emulate(model, "fp13") as run:
        out = model(q, k, v)
    scores = emulated_matmul(q, k.transpose(-2, -1), "fp13") * 8 ** -0.5
    attn = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)
    assert torch.equal(out, emulated_matmul(attn, v, "fp13"))
    assert [r.name for r in run.report().ops] == ["sdpa0.qk", "sdpa0.av"]


def test_bert_eager_attention_matmuls_are_captured():
    from test_emulate_helpers import bert_inputs, tiny_bert
    model = tiny_bert("eager")
    with torch.no_grad(), vitaccel.emulate(model, "fp13", exact=False) as run:
        model(**bert_inputs())
    names = [r.name for r in run.report().ops]
    assert "encoder.layer.0.attention.self.matmul0" in names and "encoder.layer.1.attention.self.matmul1" in names
    assert len(names) == 2 * (6 + 2) + 1  # per layer: q, k, v, out, 2 FFN + 2 attention matmuls; pooler
