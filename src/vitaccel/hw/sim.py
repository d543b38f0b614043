"""Co-simulation with Amaranth's simulator: many copies of an element driven through packed ports,
and whole dot products through the dot units (``simulate``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from amaranth import Module, Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

Vector = dict[str, int]


@dataclass(frozen=True)
class Port:
    """One flattened port of an element: name (``a``, ``a[3]``), width, signedness, direction."""

    name: str
    path: tuple
    width: int
    signed: bool
    is_input: bool


def ports(component: wiring.Component) -> list[Port]:
    """Flattened ports in signature order (arrays expanded, structs kept as raw bits)."""
    out = []
    for path, member, _ in component.signature.flatten(component):
        shape = Shape.cast(member.shape)
        name = path[0] + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[1:])
        out.append(Port(name, path, shape.width, shape.signed, member.flow == In))
    return out


def _lookup(component: wiring.Component, path: tuple):
    obj = component
    for part in path:
        obj = obj[part] if isinstance(part, int) else getattr(obj, part)
    return obj


class Packed(wiring.Component):
    """``copies`` instances of an element with all inputs packed into ``i`` and all outputs into ``o``
    (element j at offset j * width, ports in signature order). Sequential elements share the clock."""

    def __init__(self, make: Callable[[], wiring.Component], copies: int = 1) -> None:
        self.elements = [make() for _ in range(copies)]
        self.ports = ports(self.elements[0])
        self.in_width = sum(p.width for p in self.ports if p.is_input)
        self.out_width = sum(p.width for p in self.ports if not p.is_input)
        super().__init__({"i": In(self.in_width * copies), "o": Out(self.out_width * copies)})

    def elaborate(self, platform) -> Module:
        m = Module()
        for j, el in enumerate(self.elements):
            m.submodules[f"e{j}"] = el
            i_off, o_off = j * self.in_width, j * self.out_width
            for p in self.ports:
                sig = _lookup(el, p.path)
                if p.is_input:
                    m.d.comb += sig.eq(self.i[i_off:i_off + p.width])
                    i_off += p.width
                else:
                    m.d.comb += self.o[o_off:o_off + p.width].eq(sig)
                    o_off += p.width
        return m

    def pack(self, vectors: Sequence[Vector]) -> int:
        """The ``i`` value driving element j with vectors[j] (missing ports are 0)."""
        word, off = 0, 0
        for vec in vectors:
            for p in self.ports:
                if p.is_input:
                    word |= (vec.get(p.name, 0) & ((1 << p.width) - 1)) << off
                    off += p.width
        return word

    def unpack(self, word: int, count: int) -> list[Vector]:
        """Outputs of the first ``count`` elements from an ``o`` value (signed ports sign-extended)."""
        out, off = [], 0
        for _ in range(count):
            vec = {}
            for p in self.ports:
                if not p.is_input:
                    v = (word >> off) & ((1 << p.width) - 1)
                    vec[p.name] = v - (1 << p.width) if p.signed and v >> (p.width - 1) else v
                    off += p.width
            out.append(vec)
        return out

    def pack_outputs(self, vec: Vector) -> int:
        """One element's outputs packed as ``o`` holds them (for exported expected vectors)."""
        word, off = 0, 0
        for p in self.ports:
            if not p.is_input:
                word |= (vec[p.name] & ((1 << p.width) - 1)) << off
                off += p.width
        return word


WORD_BITS = 1024     # copies per step: as many as fit this many port bits (measured best; at least 1)


def _copies(make: Callable[[], wiring.Component], wanted: int, items: int) -> int:
    """Copies per simulator step: several small elements per step pay off, wide ones are fastest alone."""
    probe = make()
    width = sum(p.width for p in ports(probe))
    for obj in (probe, getattr(probe, "element", None)):     # the probe (and a wrapped element) is never used
        if obj is not None:
            obj._MustUse__silence = True
    return max(1, min(wanted, items, WORD_BITS // max(width, 1)))


def _progress(total: int, desc: str, show: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="vec", disable=not show, leave=False)


def run_comb(make: Callable[[], wiring.Component], vectors: Sequence[Vector], copies: int = 64,
             progress: bool = False, desc: str = "co-sim") -> list[Vector]:
    """Outputs of a combinational element for every input vector, up to ``copies`` evaluated per
    simulator step (measured: several copies per step help small elements; wide ones run fastest alone)."""
    copies = _copies(make, copies, len(vectors))
    dut = Packed(make, copies)
    results: list[Vector] = []
    bar = _progress(len(vectors), desc, progress)

    async def bench(ctx) -> None:
        for start in range(0, len(vectors), copies):
            chunk = vectors[start:start + copies]
            ctx.set(dut.i, dut.pack(chunk))
            results.extend(dut.unpack(ctx.get(dut.o), len(chunk)))
            bar.update(len(chunk))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    bar.close()
    return results


def run_streams(make: Callable[[], wiring.Component], streams: Sequence[Sequence[Vector]], copies: int = 8,
                progress: bool = False, desc: str = "co-sim") -> list[list[Vector]]:
    """Clocked elements: stream s is fed one vector per clock; the outputs after every clock edge."""
    copies = _copies(make, copies, len(streams))
    dut = Packed(make, copies)
    results: list[list[Vector]] = []
    bar = _progress(len(streams), desc, progress)

    async def bench(ctx) -> None:
        for start in range(0, len(streams), copies):
            chunk = streams[start:start + copies]
            outs: list[list[Vector]] = [[] for _ in chunk]
            for c in range(max(len(s) for s in chunk)):
                ctx.set(dut.i, dut.pack([s[c] if c < len(s) else {} for s in chunk]))
                await ctx.tick()
                for j, vec in enumerate(dut.unpack(ctx.get(dut.o), len(chunk))):
                    if c < len(chunk[j]):
                        outs[j].append(vec)
            results.extend(outs)
            bar.update(len(chunk))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    bar.close()
    return results


def group_stream(a_codes: Sequence[int], b_codes: Sequence[int], group_size: int,
                 scales: dict[str, tuple[Sequence[int], int]] | None = None) -> list[Vector]:
    """The cycles of one dot product: group j of G operand codes per clock, a mask on the last.
    ``scales``: port (``a_scale``, ``b_scale``) -> (the operand's block scale codes along K, elements
    per block): each group carries the scale of the block it lies in."""
    cycles = []
    for j, start in enumerate(range(0, max(len(a_codes), 1), group_size)):
        vec: Vector = {"en": 1, "first": int(j == 0)}
        a_grp, b_grp = a_codes[start:start + group_size], b_codes[start:start + group_size]
        for i, (x, y) in enumerate(zip(a_grp, b_grp)):
            vec[f"a[{i}]"], vec[f"b[{i}]"] = x, y
        vec["mask"] = (1 << len(a_grp)) - 1
        for port, (codes, block) in (scales or {}).items():
            vec[port] = codes[start // block]
        cycles.append(vec)
    return cycles


def iter_chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
