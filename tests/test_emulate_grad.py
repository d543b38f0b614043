"""grad='ste': straight-through backward, so a model can be fine-tuned through the emulator."""

import torch
import torch.nn as nn
from sklearn.datasets import load_digits

from vitaccel.emulate import emulate


def test_ste_gradient_is_the_float32_gradient_and_forward_is_emulated():
    torch.manual_seed(0)
    layer, x, g = nn.Linear(8, 3), torch.randn(5, 8), torch.randn(5, 3)
    (layer(x) * g).sum().backward()
    native_grads = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    with emulate(layer, "fp13", grad="ste") as run:
        y = layer(x)
        (y * g).sum().backward()
    assert not torch.equal(y, layer(x))
    for p, expected in zip(layer.parameters(), native_grads):
        torch.testing.assert_close(p.grad, expected)
    assert run.report().ops[0].calls == 1


def test_loss_decreases_when_training_through_the_emulator():
    digits = load_digits()
    x = torch.tensor(digits.data[:512], dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target[:512])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    with emulate(model, "fp13", exact=False, grad="ste", stats=False):
        for step in range(40):
            batch = slice((step * 64) % 512, (step * 64) % 512 + 64)
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert sum(losses[-8:]) / 8 < 0.5 * sum(losses[:8]) / 8
