"""Gate-level simulation of a generic-gate netlist (Yosys ``write_json`` after
``abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX``): logic depth, bit-exact outputs and toggle counts.

Zero-delay, cycle-by-cycle: every vector of a stream is one settled evaluation of the whole
combinational netlist, so a toggle is a gate output that differs between consecutive vectors
(glitches inside one evaluation are not seen). Vectors are packed 64 to a ``uint64`` word, one row
per net, and every gate is one NumPy bitwise operation over the whole stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from vitaccel.errors import HardwareError

# gate type -> its input ports, in the order ``_evaluate`` takes them
GATES: dict[str, tuple[str, ...]] = {
    "$_BUF_": ("A",), "$_NOT_": ("A",),
    "$_AND_": ("A", "B"), "$_NAND_": ("A", "B"), "$_OR_": ("A", "B"), "$_NOR_": ("A", "B"),
    "$_XOR_": ("A", "B"), "$_XNOR_": ("A", "B"),
    "$_MUX_": ("A", "B", "S"),
}
CHUNK = 1 << 16          # vectors simulated at once (memory: rows x CHUNK / 8 bytes)
MAX_PORT_BITS = 62       # ports are exchanged as int64
_ONES = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


@dataclass(frozen=True)
class Port:
    """A module port: its net rows (LSB first) and whether its value is two's complement."""

    name: str
    rows: tuple[int, ...]
    signed: bool

    @property
    def lo(self) -> int:
        return -(1 << (len(self.rows) - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (len(self.rows) - 1)) - 1 if self.signed else (1 << len(self.rows)) - 1


class Netlist:
    """A flattened generic-gate netlist, gates in topological order.

    Flip-flops and latches (``registers``) are kept only as the ends of combinational paths, for
    ``depth``; simulation takes combinational netlists. Rows: 0 is constant 0 (also ``x``/``z``),
    1 is constant 1, then one per net.
    """

    def __init__(self, module: Mapping, name: str = "top") -> None:
        self.name = name
        rows: dict[object, int] = {"0": 0, "1": 1, "x": 0, "z": 0}

        def row(bit: object) -> int:
            if bit not in rows:
                rows[bit] = len(rows) - 2
            return rows[bit]

        self.inputs: dict[str, Port] = {}
        self.outputs: dict[str, Port] = {}
        for pname, port in module.get("ports", {}).items():
            p = Port(pname, tuple(row(b) for b in port["bits"]), bool(port.get("signed", 0)))
            if port["direction"] == "input":
                self.inputs[pname] = p
            elif port["direction"] == "output":
                self.outputs[pname] = p
            else:
                raise HardwareError(f"netlist {name}: port {pname!r} has direction {port['direction']!r}; "
                                    "allowed: input, output")
        driven = {r for p in self.inputs.values() for r in p.rows} | {0, 1}
        gates: list[tuple[str, int, tuple[int, ...]]] = []
        self.registers: list[str] = []
        for cname, cell in module.get("cells", {}).items():
            ins = GATES.get(cell["type"])
            if ins is None:
                if not cell["type"].startswith("$_") or "Q" not in cell["connections"]:
                    raise HardwareError(f"netlist {name}: cell {cname!r} has type {cell['type']!r}; allowed: "
                                        f"generic gates {sorted(GATES)} and flip-flops or latches")
                self.registers.append(cell["type"])
                driven |= {row(b) for b in cell["connections"]["Q"]}
                continue
            (y,) = cell["connections"]["Y"]
            gates.append((cell["type"], row(y), tuple(row(cell["connections"][p][0]) for p in ins)))
        self.n_rows = len(rows) - 2
        self.gates = _topological(gates, driven, name)
        for p in self.outputs.values():
            undriven = [r for r in p.rows if r not in driven and r not in {g[1] for g in self.gates}]
            if undriven:
                raise HardwareError(f"netlist {name}: output {p.name!r} has undriven bits")

    # -- structure ----------------------------------------------------------------------------
    def depth(self) -> int:
        """Longest path from an input, constant or register output to any gate output, in gates
        (every gate, inverters included, counts one; the same measure as Yosys ``ltp -noff``)."""
        level = np.zeros(self.n_rows, dtype=np.int64)
        for _, y, ins in self.gates:
            level[y] = 1 + max(level[i] for i in ins)
        return int(level.max(initial=0))

    def cell_counts(self) -> dict[str, int]:
        """Gates by type."""
        counts: dict[str, int] = {}
        for kind, _, _ in self.gates:
            counts[kind] = counts.get(kind, 0) + 1
        return dict(sorted(counts.items()))

    # -- simulation ---------------------------------------------------------------------------
    def simulate(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Output port values (int64) for every vector of the input streams."""
        n = self._check(inputs)
        outs = {p: np.empty(n, dtype=np.int64) for p in self.outputs}
        for start in range(0, n, CHUNK):
            values = self._evaluate(inputs, start, min(n, start + CHUNK))
            for pname, port in self.outputs.items():
                outs[pname][start:start + CHUNK] = _unpack(values[list(port.rows)], min(CHUNK, n - start),
                                                           port.signed)
        return outs

    def toggle_counts(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Toggles of every gate output (in ``self.gates`` order) over the ``n - 1`` transitions
        between consecutive vectors of the input streams."""
        n = self._check(inputs)
        out_rows = np.array([g[1] for g in self.gates], dtype=np.int64)
        counts = np.zeros(len(self.gates), dtype=np.int64)
        # chunks overlap by one vector so that every transition is counted exactly once
        for start in range(0, max(n - 1, 0), CHUNK - 1):
            stop = min(n, start + CHUNK)
            values = self._evaluate(inputs, start, stop)[out_rows]
            nxt = np.zeros_like(values)
            nxt[:, :-1] = values[:, 1:] << np.uint64(63)
            diff = values ^ ((values >> np.uint64(1)) | nxt)
            counts += np.bitwise_count(diff & _mask(stop - start - 1, values.shape[1])).sum(axis=1,
                                                                                           dtype=np.int64)
        return counts

    def _check(self, inputs: Mapping[str, np.ndarray]) -> int:
        if self.registers:
            raise HardwareError(f"netlist {self.name}: holds {len(self.registers)} flip-flops or latches "
                                f"({sorted(set(self.registers))}); the gate simulator takes combinational units")
        missing = sorted(set(self.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(self.inputs))
        if missing or extra:
            raise HardwareError(f"netlist {self.name}: inputs {sorted(inputs)} do not match its ports "
                                f"{sorted(self.inputs)} (missing {missing}, unknown {extra})")
        sizes = {len(np.asarray(v)) for v in inputs.values()}
        if len(sizes) > 1:
            raise HardwareError(f"netlist {self.name}: input streams differ in length: "
                                f"{ {k: len(np.asarray(v)) for k, v in inputs.items()} }")
        for pname, port in self.inputs.items():
            v = np.asarray(inputs[pname])
            if v.ndim != 1 or (v.size and not np.issubdtype(v.dtype, np.integer)):
                raise HardwareError(f"netlist {self.name}: input {pname!r} must be a 1-D integer array, "
                                    f"got {v.dtype} of shape {v.shape}")
            if v.size and (int(v.min()) < port.lo or int(v.max()) > port.hi):
                raise HardwareError(f"netlist {self.name}: input {pname!r} holds values in "
                                    f"[{int(v.min())}, {int(v.max())}]; its {len(port.rows)} bits allow "
                                    f"[{port.lo}, {port.hi}]")
        for pname, port in {**self.inputs, **self.outputs}.items():
            if len(port.rows) > MAX_PORT_BITS:
                raise HardwareError(f"netlist {self.name}: port {pname!r} has {len(port.rows)} bits; "
                                    f"the simulator exchanges at most {MAX_PORT_BITS}")
        return sizes.pop() if sizes else 0

    def _evaluate(self, inputs: Mapping[str, np.ndarray], start: int, stop: int) -> np.ndarray:
        """Packed values of every net for vectors ``start:stop``."""
        words = (stop - start + 63) // 64
        v = np.zeros((self.n_rows, words), dtype=np.uint64)
        v[1] = _ONES
        for pname, port in self.inputs.items():
            v[list(port.rows)] = _pack(np.asarray(inputs[pname], dtype=np.int64)[start:stop], len(port.rows),
                                       words)
        for kind, y, ins in self.gates:
            out = v[y]
            if kind == "$_MUX_":          # Y = S ? B : A
                np.bitwise_xor(v[ins[0]], v[ins[1]], out=out)
                np.bitwise_and(out, v[ins[2]], out=out)
                np.bitwise_xor(out, v[ins[0]], out=out)
            elif kind in ("$_BUF_", "$_NOT_"):
                np.bitwise_xor(v[ins[0]], _ONES if kind == "$_NOT_" else np.uint64(0), out=out)
            else:
                op, invert = _BINARY[kind]
                op(v[ins[0]], v[ins[1]], out=out)
                if invert:
                    np.invert(out, out=out)
        return v


_BINARY = {"$_AND_": (np.bitwise_and, False), "$_NAND_": (np.bitwise_and, True),
           "$_OR_": (np.bitwise_or, False), "$_NOR_": (np.bitwise_or, True),
           "$_XOR_": (np.bitwise_xor, False), "$_XNOR_": (np.bitwise_xor, True)}


def _topological(gates: list[tuple[str, int, tuple[int, ...]]], driven: set[int],
                 name: str) -> list[tuple[str, int, tuple[int, ...]]]:
    """Gates ordered so that each comes after the gates driving its inputs (Kahn)."""
    by_output = {}
    for g in gates:
        if g[1] in by_output or g[1] in driven:
            raise HardwareError(f"netlist {name}: net row {g[1]} has more than one driver")
        by_output[g[1]] = g
    readers: dict[int, list[int]] = {}
    pending = []
    for k, (_, _, ins) in enumerate(gates):
        waiting = {i for i in ins if i not in driven}
        for i in waiting:
            if i not in by_output:
                raise HardwareError(f"netlist {name}: a gate reads net row {i}, which nothing drives")
            readers.setdefault(i, []).append(k)
        pending.append(len(waiting))
    ready = [k for k, c in enumerate(pending) if c == 0]
    order = []
    while ready:
        k = ready.pop()
        order.append(gates[k])
        for r in readers.get(gates[k][1], ()):
            pending[r] -= 1
            if pending[r] == 0:
                ready.append(r)
    if len(order) != len(gates):
        raise HardwareError(f"netlist {name}: {len(gates) - len(order)} gates sit on combinational loops")
    return order


def _pack(x: np.ndarray, width: int, words: int) -> np.ndarray:
    """(width, words) uint64: bit i of every value, 64 vectors to a word (vector j at bit j % 64)."""
    bits = ((x[None, :] >> np.arange(width, dtype=np.int64)[:, None]) & 1).astype(np.uint8)
    packed = np.packbits(bits, axis=1, bitorder="little")
    full = np.zeros((width, words * 8), dtype=np.uint8)
    full[:, :packed.shape[1]] = packed
    return full.view("<u8").astype(np.uint64, copy=False)


def _unpack(rows: np.ndarray, n: int, signed: bool) -> np.ndarray:
    """Inverse of ``_pack``: int64 values from (width, words) packed bits."""
    bits = np.unpackbits(rows.astype("<u8").view(np.uint8), axis=1, bitorder="little")[:, :n].astype(np.int64)
    width = rows.shape[0]
    value = (bits << np.arange(width, dtype=np.int64)[:, None]).sum(axis=0)
    if signed and width:
        value -= bits[-1] << width
    return value


def _mask(transitions: int, words: int) -> np.ndarray:
    """Word mask selecting bits 0 .. transitions-1 (the valid transitions of a chunk)."""
    m = np.zeros(words, dtype=np.uint64)
    full, rest = divmod(transitions, 64)
    m[:full] = _ONES
    if rest:
        m[full] = np.uint64((1 << rest) - 1)
    return m
