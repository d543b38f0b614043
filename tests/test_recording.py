"""Operand recording (vitaccel.emulate.recording): bounded samples of the codes a datapath sees."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vitaccel.arith import AcceleratorConfig, FloatFormat
from vitaccel.arith.intpath import quantize_int
from vitaccel.emulate.recording import Recorder, record
from vitaccel.errors import EmulateError


class Tiny(nn.Module):
    """A conv, a linear (K = 40: not a multiple of G) and attention: every kind of product."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(40, 8)

    def forward(self, x):
        y = self.fc(torch.relu(self.conv(x).flatten(1)[:, :40]))
        q = y.reshape(2, 2, 2, 2)
        return F.scaled_dot_product_attention(q, q, q)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Tiny()


def test_native_results_and_bounded_rows(model):
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    rec = record(model, x, "int8-lot4", rows=10)
    assert torch.equal(model(x), expected)                 # hooks removed, model as before
    assert set(rec.a) == {"conv", "fc", "sdpa0.qk", "sdpa0.av"}
    assert all(v.shape == (10, 16) for v in (*rec.a.values(), *rec.b.values()))
    a, b = rec.operands()
    assert a.shape == b.shape == (40, 16)


def test_int_codes_are_the_quantised_operands(model):
    x = torch.randn(2, 3, 8, 8)
    rec = record(model, x, "int8", rows=6)
    act = torch.relu(model.conv(x).flatten(1)[:, :40])
    qa = quantize_int(act, 8)[0].numpy()
    qw = quantize_int(model.fc.weight.t(), 8, axis=-1)[0].numpy()   # one scale per output channel
    rows_a, rows_w = rec.a["fc"], rec.b["fc"]
    assert np.abs(rows_a).max() <= 127 and rows_a.min() >= 0           # ReLU activations
    # K = 40 over G = 16: groups of 16, 16 and 8 + 8 zero pads, output by output
    assert (rows_a[2::3, 8:] == 0).all() and (rows_w[2::3, 8:] == 0).all()
    for r in range(0, 6, 3):
        row = rows_a[r:r + 3].reshape(-1)[:40]
        col = rows_w[r:r + 3].reshape(-1)[:40]
        assert any((row == qa[i]).all() for i in range(qa.shape[0]))
        assert any((col == qw[:, j]).all() for j in range(qw.shape[1]))


def test_per_token_codes_scale_each_row_and_each_activation_column(model):
    """int8-dyn: the fc activation's rows and attention's second operand's columns each on their own
    scale, as emulated_matmul quantises them; weights per output channel as before."""
    x = torch.randn(2, 3, 8, 8)
    x[1] *= 1e-3                                            # a quiet image: per tensor its row would be ~0
    rec = record(model, x, "int8-dyn", rows=6)
    act = torch.relu(model.conv(x).flatten(1)[:, :40])
    rows = [rec.a["fc"][r:r + 3].reshape(-1)[:40] for r in range(0, 6, 3)]
    own = [quantize_int(act[i:i + 1], 8)[0][0].numpy() for i in range(2)]
    assert all(any((row == q).all() for q in own) for row in rows)
    assert not (quantize_int(act, 8)[0][1] == torch.from_numpy(own[1])).all()   # per tensor would differ
    v = model.fc(act).reshape(2, 2, 2, 2)                    # attention's value: b of sdpa0.av, K = 2
    cols = {tuple(quantize_int(v[i, h, :, n], 8)[0].tolist()) for i in range(2) for h in range(2) for n in range(2)}
    assert {tuple(r[:2].tolist()) for r in rec.b["sdpa0.av"]} <= cols


def test_float_codes_are_format_bit_patterns(model):
    x = torch.randn(2, 3, 8, 8)
    rec = record(model, x, "fp13", rows=8)
    fmt = FloatFormat.named("e5m7")
    codes = rec.a["fc"]
    assert codes.min() >= 0 and codes.max() < 2 ** 13
    act = torch.relu(model.conv(x).flatten(1)[:, :40])
    values = set(fmt.quantize(act).flatten().tolist()) | {0.0}
    assert set(fmt.decode(torch.from_numpy(codes)).flatten().tolist()) <= values


def test_seeded_and_refusals(model):
    x = torch.randn(2, 3, 8, 8)
    assert np.array_equal(record(model, x, "int8", rows=5, seed=3).operands()[0],
                          record(model, x, "int8", rows=5, seed=3).operands()[0])
    with pytest.raises(EmulateError, match="native"):
        Recorder(AcceleratorConfig.preset("fp32"))
    with pytest.raises(EmulateError, match="no matrix product"):
        Recorder(AcceleratorConfig.preset("int8")).operands()
