"""Circuits of the datapaths (DESIGN.md section 12): Amaranth generators built from an
``AcceleratorConfig``, co-simulated bit for bit against ``vitaccel.arith.golden``, exported to Verilog.

``build(config)`` returns the elements and the dot-product unit; ``simulate(config, a, b)`` runs a
matmul through the circuit in Amaranth's simulator. The native fp32 config has no circuit.
"""

from vitaccel.hw.circuits import Circuits, build
from vitaccel.hw.operands import simulate, simulate_accumulators

__all__ = ["Circuits", "build", "simulate", "simulate_accumulators"]
