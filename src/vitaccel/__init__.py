"""vitaccel: make vision transformers cheap on neural-network accelerators.

Token pruning (``vitaccel.prune``), bit-exact accelerator arithmetic (``vitaccel.arith``),
whole-model emulation (``vitaccel.emulate``), training (``vitaccel.train``) and measurement
(``vitaccel.measure``).
"""

__version__ = "0.1.0"
