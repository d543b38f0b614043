"""One converted model and several threads: a concurrent forward is refused, never run native in
silence, and the model keeps emulating afterwards (issue 14, defect 4)."""

import threading

import pytest
import torch
import torch.nn as nn

from vitaccel.emulate import EmulateError, convert, restore


class Gate(nn.Module):
    """Two linear layers; between them the forward can be held open (``hold``/``release``)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(16, 16), nn.Linear(16, 4)
        self.inside, self.release = threading.Event(), threading.Event()
        self.release.set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        self.inside.set()
        assert self.release.wait(10)
        return self.fc2(h)


def _x(seed: int) -> torch.Tensor:
    return torch.randn(3, 16, generator=torch.Generator().manual_seed(seed)) * 7


def test_a_forward_from_another_thread_is_refused_while_one_runs():
    model = Gate().eval()
    with torch.no_grad():
        native = model(_x(1))
        run = convert(model, "fp13")
        emulated = model(_x(1))
        assert not torch.equal(emulated, native)  # fp13 changes the result: emulation is visible
        model.release.clear()
        model.inside.clear()
        out = {}
        worker = threading.Thread(target=lambda: out.setdefault("y", model(_x(1))))
        worker.start()
        assert model.inside.wait(10)
        with pytest.raises(EmulateError, match="runs in another thread; a converted model runs one forward"):
            model(_x(2))
        with pytest.raises(EmulateError, match="another thread"):
            model.fc2(_x(2)[:, :16])  # a submodule called on its own, too
        model.release.set()
        worker.join(10)
        assert torch.equal(out["y"], emulated)  # the running forward was not disturbed
        assert torch.equal(model(_x(1)), emulated)  # and the model still emulates afterwards
    assert run.report().forwards == 3
    restore(model)


def test_many_threads_never_get_a_native_result():
    model = Gate().eval()
    with torch.no_grad():
        native = {i: model(_x(i)) for i in range(4)}
        convert(model, "fp13")
        emulated = {i: model(_x(i)) for i in range(4)}
        results, refused = [], []
        start = threading.Barrier(4)

        def work(i: int) -> None:
            start.wait()
            for _ in range(4):
                try:
                    results.append((i, model(_x(i))))
                except EmulateError:
                    refused.append(i)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) + len(refused) == 16 and results
        for i, y in results:
            assert torch.equal(y, emulated[i]) and not torch.equal(y, native[i])
        assert all(torch.equal(model(_x(i)), emulated[i]) for i in range(4))
    restore(model)
