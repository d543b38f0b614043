"""The one timing loop every benchmark uses: interleaved rounds, rotating order.

Each round runs every function once, in an order rotated by one each round, so machine load and
cache effects hit all of them alike; ratios of their medians (or bests) are what the benchmarks
report. Import from a script in this folder: ``from timing import interleaved``.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, ContextManager


def interleaved(fns: dict[str, Callable[[], object]], warmup: int, repeats: int, *,
                around: Callable[[str], ContextManager] | None = None,
                sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds of each ``fns[name]()`` in each of ``repeats`` rounds after ``warmup`` rounds.

    ``around(name)`` is entered outside the timed call (e.g. convert a model, then restore it);
    ``sync()`` runs before and after each timed call (e.g. ``torch.cuda.synchronize``).
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for round_ in range(warmup + repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            with around(name) if around is not None else contextlib.nullcontext():
                sync()
                start = time.perf_counter()
                fns[name]()
                sync()
                seconds = time.perf_counter() - start
            if round_ >= warmup:
                times[name].append(seconds)
    return times
