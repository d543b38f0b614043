"""Gate-level simulation of a generic-gate netlist (Yosys ``write_json`` after
``abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX``): logic depth, bit-exact outputs and toggle counts.

Zero-delay, cycle-by-cycle: every vector of a stream is one settled evaluation of the whole
combinational netlist, so a toggle is a gate output that differs between consecutive vectors
(glitches inside one evaluation are not seen). Vectors are packed 64 to a ``uint64`` word, one row
per net, and every gate is one NumPy bitwise operation over the whole stream.

Netlists with flip-flops (the ``$_DFF_``, ``$_DFFE_``, ``$_SDFF_``, ``$_SDFFE_`` and ``$_SDFFCE_``
cells Yosys leaves; one clock) run with ``Netlist.run``: cycle by cycle, each of up to thousands of
independent sequences (lanes) in one bit of the packed words; a cycle settles the gates on the
inputs and the current state, then the clock edge loads every flip-flop.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from vitaccel.errors import HardwareError

# gate type -> its input ports, in the order ``_evaluate`` takes them
GATES: dict[str, tuple[str, ...]] = {
    "$_BUF_": ("A",), "$_NOT_": ("A",),
    "$_AND_": ("A", "B"), "$_NAND_": ("A", "B"), "$_OR_": ("A", "B"), "$_NOR_": ("A", "B"),
    "$_XOR_": ("A", "B"), "$_XNOR_": ("A", "B"),
    "$_MUX_": ("A", "B", "S"),
}
# flip-flop type pattern -> (enable, reset, reset only when enabled); groups: clock, reset, value, enable polarity
FLIP_FLOPS = {
    re.compile(r"\$_DFF_([NP])_\Z"): (False, False, False),
    re.compile(r"\$_DFFE_([NP])()()([NP])_\Z"): (True, False, False),
    re.compile(r"\$_SDFF_([NP])([NP])([01])_\Z"): (False, True, False),
    re.compile(r"\$_SDFFE_([NP])([NP])([01])([NP])_\Z"): (True, True, False),
    re.compile(r"\$_SDFFCE_([NP])([NP])([01])([NP])_\Z"): (True, True, True),
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


@dataclass(frozen=True)
class FlipFlop:
    """One flip-flop bit: next state ``value`` when reset is active (and, ``reset_gated``, enabled),
    else ``d`` when enabled, else ``q``. Rows as in ``Netlist``; no enable reads row 1, no reset row 0."""

    kind: str
    d: int
    q: int
    clock: int
    enable: int = 1
    enable_low: bool = False
    reset: int = 0
    reset_low: bool = False
    value: int = 0
    reset_gated: bool = False


@dataclass
class SequentialRun:
    """What ``Netlist.run`` returns: outputs per cycle and toggles of every gate and flip-flop."""

    outputs: dict[str, np.ndarray]       # port -> (cycles, lanes): settled values in each cycle
    gate_toggles: np.ndarray             # per gate (``Netlist.gates`` order), over every lane
    flop_toggles: np.ndarray             # per flip-flop (``Netlist.flops`` order), over every lane
    transitions: int                     # cycle-to-cycle transitions counted, over every lane
    final_state: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=np.uint64))

    @property
    def toggles(self) -> int:
        """Gate-output plus flip-flop-output toggles."""
        return int(self.gate_toggles.sum() + self.flop_toggles.sum())


class Netlist:
    """A flattened generic-gate netlist, gates in topological order.

    Flip-flops (``flops``) end combinational paths (for ``depth``) and hold the state of
    ``run``; ``simulate`` and ``toggle_counts`` take combinational netlists. ``registers`` lists
    every state cell's type (latches and unsupported flip-flops too). Rows: 0 is constant 0 (also
    ``x``/``z``), 1 is constant 1, then one per net.
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
        self.flops: list[FlipFlop] = []
        self.unsupported: list[str] = []      # state cells ``run`` cannot take (latches, async resets, ...)
        for cname, cell in module.get("cells", {}).items():
            ins = GATES.get(cell["type"])
            if ins is None:
                if not cell["type"].startswith("$_") or "Q" not in cell["connections"]:
                    raise HardwareError(f"netlist {name}: cell {cname!r} has type {cell['type']!r}; allowed: "
                                        f"generic gates {sorted(GATES)} and flip-flops or latches")
                self.registers.append(cell["type"])
                driven |= {row(b) for b in cell["connections"]["Q"]}
                flop = _flip_flop(cell, row)
                if flop is None:
                    self.unsupported.append(cell["type"])
                else:
                    self.flops.append(flop)
                continue
            (y,) = cell["connections"]["Y"]
            gates.append((cell["type"], row(y), tuple(row(cell["connections"][p][0]) for p in ins)))
        self.n_rows = len(rows) - 2
        init: dict[int, int] = {}                 # flip-flop output row -> its initial value (Yosys "init")
        for net in module.get("netnames", {}).values():
            value = str(net.get("attributes", {}).get("init", ""))
            for bit, char in zip(net["bits"], reversed(value)):
                if char in "01" and bit in rows:
                    init[rows[bit]] = int(char)
        self.initial = tuple(init.get(f.q, 0) for f in self.flops)
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

    def clock(self) -> str | None:
        """The input port that clocks every flip-flop (None without flip-flops)."""
        if self.unsupported:
            raise HardwareError(f"netlist {self.name}: holds state cells {sorted(set(self.unsupported))}; the "
                                "sequential simulator takes one-clock flip-flops $_DFF_, $_DFFE_, $_SDFF_, $_SDFFE_, "
                                "$_SDFFCE_ (no latches, no asynchronous resets)")
        clocks = {f.clock for f in self.flops}
        if not clocks:
            return None
        ports = [p.name for p in self.inputs.values() if len(p.rows) == 1 and p.rows[0] in clocks]
        if len(clocks) > 1 or not ports:
            raise HardwareError(f"netlist {self.name}: its flip-flops are clocked by {len(clocks)} nets"
                                f"{'' if ports else ' that are not an input port'}; the simulator takes one clock "
                                "input port")
        return ports[0]

    def run(self, inputs: Mapping[str, np.ndarray], state: np.ndarray | None = None) -> SequentialRun:
        """Clocked simulation: ``inputs`` maps every input port but the clock to a (cycles,) or
        (cycles, lanes) integer array (each lane an independent sequence). In cycle t the gates
        settle on the inputs of t and the state after t clock edges (``outputs[t]``); then the
        edge loads every flip-flop. ``state``: packed initial flip-flop values, (flops, words), from
        ``final_state`` of an earlier run; the registers' initial values (``initial``, from Yosys's
        ``init`` attributes: Amaranth's ``init``) when None."""
        clock = self.clock()
        given = {k: np.asarray(v) for k, v in inputs.items()}
        given = {k: v[:, None] if v.ndim == 1 else v for k, v in given.items()}
        data_ports = {k: p for k, p in self.inputs.items() if k != clock}
        if clock in given:
            raise HardwareError(f"netlist {self.name}: input {clock!r} is the clock; the simulator drives it")
        missing, extra = sorted(set(data_ports) - set(given)), sorted(set(given) - set(data_ports))
        if missing or extra:
            raise HardwareError(f"netlist {self.name}: inputs {sorted(given)} do not match its ports "
                                f"{sorted(data_ports)} (missing {missing}, unknown {extra})")
        shapes = {v.shape for v in given.values()}
        if len(shapes) > 1 or any(len(sh) != 2 for sh in shapes):
            raise HardwareError(f"netlist {self.name}: input streams must share one (cycles,) or (cycles, lanes) "
                                f"shape; got { {k: v.shape for k, v in given.items()} }")
        cycles, lanes = shapes.pop() if shapes else (0, 1)
        for pname, port in data_ports.items():
            _check_values(self.name, pname, port, given[pname])
        words = (lanes + 63) // 64
        lane_mask = _mask(lanes, words)
        packed = {k: _pack_cycles(given[k].astype(np.int64), len(p.rows), words) for k, p in data_ports.items()}
        gate_rows = np.array([g[1] for g in self.gates], dtype=np.int64)
        ff = self.flops
        q_rows = np.array([f.q for f in ff], dtype=np.int64)
        d_rows, e_rows, r_rows = (np.array([getattr(f, a) for f in ff], dtype=np.int64)
                                  for a in ("d", "enable", "reset"))

        def ones_where(flags: list[bool]) -> np.ndarray:
            return np.where(np.array(flags, dtype=bool), _ONES, np.uint64(0))[:, None].astype(np.uint64)

        e_inv, r_inv = ones_where([f.enable_low for f in ff]), ones_where([f.reset_low for f in ff])
        value, gated = ones_where([f.value == 1 for f in ff]), ones_where([f.reset_gated for f in ff])
        q = ones_where([v == 1 for v in self.initial]) & np.ones((1, words), dtype=np.uint64) if state is None \
            else np.array(state, dtype=np.uint64)
        if q.shape != (len(ff), words):
            raise HardwareError(f"netlist {self.name}: state has shape {q.shape}; ({len(ff)}, {words}) allowed")
        v = np.zeros((self.n_rows, words), dtype=np.uint64)
        v[1] = _ONES
        outs = {k: np.empty((cycles, len(p.rows), words), dtype=np.uint64) for k, p in self.outputs.items()}
        gate_counts = np.zeros(len(self.gates), dtype=np.int64)
        flop_counts = np.zeros(len(ff), dtype=np.int64)
        prev = None
        for t in range(cycles):
            for k, p in data_ports.items():
                v[list(p.rows)] = packed[k][t]
            if len(ff):
                v[q_rows] = q
            self._propagate(v)
            for k, p in self.outputs.items():
                outs[k][t] = v[list(p.rows)]
            now = v[gate_rows]
            if prev is not None:
                gate_counts += np.bitwise_count((now ^ prev) & lane_mask).sum(axis=1, dtype=np.int64)
            prev = now
            if len(ff):
                en = v[e_rows] ^ e_inv
                rst = (v[r_rows] ^ r_inv) & (en | ~gated)
                nxt = (rst & value) | (~rst & ((en & v[d_rows]) | (~en & q)))
                flop_counts += np.bitwise_count((nxt ^ q) & lane_mask).sum(axis=1, dtype=np.int64)
                q = nxt
        outputs = {k: _unpack_cycles(o, lanes, self.outputs[k].signed) for k, o in outs.items()}
        return SequentialRun(outputs, gate_counts, flop_counts, max(cycles - 1, 0) * lanes, q)

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
            if v.ndim != 1:
                raise HardwareError(f"netlist {self.name}: input {pname!r} must be a 1-D integer array, "
                                    f"got {v.dtype} of shape {v.shape}")
            _check_values(self.name, pname, port, v)
        for pname, port in self.outputs.items():
            _check_width(self.name, pname, port)
        return sizes.pop() if sizes else 0

    def _evaluate(self, inputs: Mapping[str, np.ndarray], start: int, stop: int) -> np.ndarray:
        """Packed values of every net for vectors ``start:stop``."""
        words = (stop - start + 63) // 64
        v = np.zeros((self.n_rows, words), dtype=np.uint64)
        v[1] = _ONES
        for pname, port in self.inputs.items():
            v[list(port.rows)] = _pack(np.asarray(inputs[pname], dtype=np.int64)[start:stop], len(port.rows),
                                       words)
        self._propagate(v)
        return v

    def _propagate(self, v: np.ndarray) -> None:
        """Settle every gate in place, inputs (and state) already in ``v``."""
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


_BINARY = {"$_AND_": (np.bitwise_and, False), "$_NAND_": (np.bitwise_and, True),
           "$_OR_": (np.bitwise_or, False), "$_NOR_": (np.bitwise_or, True),
           "$_XOR_": (np.bitwise_xor, False), "$_XNOR_": (np.bitwise_xor, True)}


def _check_width(name: str, pname: str, port: Port) -> None:
    if len(port.rows) > MAX_PORT_BITS:
        raise HardwareError(f"netlist {name}: port {pname!r} has {len(port.rows)} bits; "
                            f"the simulator exchanges at most {MAX_PORT_BITS}")


def _check_values(name: str, pname: str, port: Port, v: np.ndarray) -> None:
    """An integer stream within the port's range."""
    _check_width(name, pname, port)
    if v.size and not np.issubdtype(v.dtype, np.integer):
        raise HardwareError(f"netlist {name}: input {pname!r} must be an integer array, got {v.dtype}")
    if v.size and (int(v.min()) < port.lo or int(v.max()) > port.hi):
        raise HardwareError(f"netlist {name}: input {pname!r} holds values in [{int(v.min())}, {int(v.max())}]; "
                            f"its {len(port.rows)} bits allow [{port.lo}, {port.hi}]")


def _flip_flop(cell: Mapping, row) -> FlipFlop | None:
    """The ``FlipFlop`` of a one-bit Yosys flip-flop cell, or None for a type ``run`` does not take."""
    for pattern, (has_enable, has_reset, gated) in FLIP_FLOPS.items():
        m = pattern.match(cell["type"])
        if m is None:
            continue
        c = cell["connections"]
        groups = m.groups() + ("",) * (4 - len(m.groups()))
        return FlipFlop(cell["type"], row(c["D"][0]), row(c["Q"][0]), row(c["C"][0]),
                        enable=row(c["E"][0]) if has_enable else 1, enable_low=groups[3] == "N",
                        reset=row(c["R"][0]) if has_reset else 0, reset_low=groups[1] == "N",
                        value=int(groups[2] or 0), reset_gated=gated)
    return None


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


def _pack_cycles(x: np.ndarray, width: int, words: int) -> np.ndarray:
    """(cycles, width, words) uint64 from (cycles, lanes) values: lane j at bit j % 64 of word j // 64."""
    bits = ((x[:, None, :] >> np.arange(width, dtype=np.int64)[None, :, None]) & 1).astype(np.uint8)
    packed = np.packbits(bits, axis=2, bitorder="little")
    full = np.zeros((x.shape[0], width, words * 8), dtype=np.uint8)
    full[:, :, :packed.shape[2]] = packed
    return full.view("<u8").astype(np.uint64, copy=False)


def _unpack_cycles(rows: np.ndarray, lanes: int, signed: bool) -> np.ndarray:
    """Inverse of ``_pack_cycles``: (cycles, lanes) int64."""
    bits = np.unpackbits(rows.astype("<u8").view(np.uint8), axis=2, bitorder="little")[:, :, :lanes].astype(np.int64)
    width = rows.shape[1]
    value = (bits << np.arange(width, dtype=np.int64)[None, :, None]).sum(axis=1)
    if signed and width:
        value -= bits[:, -1] << width
    return value


def _mask(transitions: int, words: int) -> np.ndarray:
    """Word mask selecting bits 0 .. transitions-1 (the valid transitions of a chunk)."""
    m = np.zeros(words, dtype=np.uint64)
    full, rest = divmod(transitions, 64)
    m[:full] = _ONES
    if rest:
        m[full] = np.uint64((1 << rest) - 1)
    return m
