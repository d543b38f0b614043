"""``export(config, out)``: Verilog of the dot-product unit and of every element, golden test vectors
(``$readmemh`` hex) and a self-checking test bench for Icarus Verilog or Verilator."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from vitaccel.arith import golden
from vitaccel.arith.config import AcceleratorConfig
from vitaccel.arith.formats import FloatFormat
from vitaccel.arith.mx import E8M0_NAN, MXFormat, operand_format
from vitaccel.hw.circuits import build
from vitaccel.hw.element_vectors import GENERATORS, element_vectors
from vitaccel.hw.float_tree import formats, mx_sides
from vitaccel.hw.fp32 import value_bits
from vitaccel.hw.sim import Packed, Vector, group_stream
from vitaccel.hw.verilog import to_verilog


@dataclass
class Exported:
    """What ``export`` wrote: the folder, the vector count, the files."""

    out: Path
    vectors: int
    dot_products: int
    files: list[Path]


def _int_operands(config: AcceleratorConfig, rng: random.Random) -> list[tuple[list[int], list[int]]]:
    """Random and crafted integer dot products: K off multiples of G and tile_k, forced overflow."""
    dp = config.int_datapath
    g = dp.group_size
    tile = dp.psum_storage.tile_k if dp.psum_storage is not None else 4 * g
    lo_a, hi_a = -2 ** (dp.a_bits - 1), 2 ** (dp.a_bits - 1) - 1
    lo_b, hi_b = -2 ** (dp.b_bits - 1), 2 ** (dp.b_bits - 1) - 1
    lengths = [1, g - 1 or 1, g, g + 1, tile - 1, tile, tile + 3, 2 * tile + g // 2 + 1, 3 * tile + 5]
    out = []
    for k in lengths:
        out.append(([rng.randint(lo_a, hi_a) for _ in range(k)], [rng.randint(lo_b, hi_b) for _ in range(k)]))
        small = max(1, 2 ** (dp.a_bits // 2))
        out.append(([rng.randint(-small, small) for _ in range(k)], [rng.randint(lo_b, hi_b) for _ in range(k)]))
    for k in (g, 2 * tile + 1, 4 * tile + g + 3):       # overflow: every product at the extremes
        out.append(([hi_a] * k, [hi_b] * k))
        out.append(([lo_a] * k, [hi_b] * k))
        out.append(([rng.choice((lo_a, hi_a)) for _ in range(k)], [hi_b] * k))
    out.append(([0] * g, [0] * g))
    return out


def _float_operands(config: AcceleratorConfig, rng: random.Random) -> list[tuple[list[int], list[int]]]:
    """Random codes over the whole code space (specials too), finite ones, and crafted exponent sweeps
    (MX operands: element codes)."""
    fp = config.float_datapath
    fa, fb = formats(fp)
    g = fp.group_size

    def finite(fmt: FloatFormat, lo_field: int, hi_field: int) -> int:
        hi_field = min(hi_field, (fmt.max_code >> fmt.man_bits))
        man = rng.randrange(2 ** fmt.man_bits)
        code = (rng.randint(lo_field, hi_field) << fmt.man_bits) | man
        code = min(code, fmt.max_code)
        return code | (rng.getrandbits(1) << (fmt.bits - 1))

    top_a, top_b = fa.max_code >> fa.man_bits, fb.max_code >> fb.man_bits
    out = []
    for k in (1, g - 1 or 1, g, g + 1, 3 * g + 5, 5 * g + 7):
        out.append(([finite(fa, 0, top_a) for _ in range(k)], [finite(fb, 0, top_b) for _ in range(k)]))
        mid_a, mid_b = (top_a + 1) // 2, (top_b + 1) // 2
        out.append(([finite(fa, mid_a - 3, mid_a + 3) for _ in range(k)],
                    [finite(fb, mid_b - 3, mid_b + 3) for _ in range(k)]))
        out.append(([finite(fa, 0, 2) for _ in range(k)], [finite(fb, 0, 2) for _ in range(k)]))       # underflow
        out.append(([finite(fa, top_a - 1, top_a) for _ in range(k)], [finite(fb, top_b - 1, top_b) for _ in range(k)]))
    for k in (g, 2 * g + 3):
        out.append(([rng.randrange(2 ** fa.bits) for _ in range(k)], [rng.randrange(2 ** fb.bits) for _ in range(k)]))
    return out


def _mx_scales(k: int, block: int, rng: random.Random) -> list[int]:
    """E8M0 scale codes of the blocks of a K-long MX operand: mostly near 2^0, and the extremes 0 and
    254 and the NaN scale 0xFF now and then (the scaled sums then overflow, underflow or are NaN)."""
    return [rng.randint(117, 137) if rng.random() < 0.9 else rng.choice((0, 254, E8M0_NAN, rng.randrange(256)))
            for _ in range(-(-k // block))]


def golden_values(config: AcceleratorConfig, side: str, codes: list[int], scales: list[int] | None) -> list:
    """Golden values of one operand's lane codes (MX: element codes under their blocks' scale codes)."""
    fp = config.float_datapath
    fmt = operand_format(getattr(fp, f"{side}_format"), fp.mx_block)
    if isinstance(fmt, MXFormat):
        return [golden.mx_value(fmt, c, scales[i // fmt.block]) for i, c in enumerate(codes)]
    return [golden.decode(fmt, c) for c in codes]


def golden_accumulators(config: AcceleratorConfig, a: list[int], b: list[int], a_scales: list[int] | None = None,
                        b_scales: list[int] | None = None) -> list[int]:
    """The golden accumulator after every group of one dot product (the unit's ``acc`` per clock);
    MX operands take their blocks' scale codes."""
    if config.datapath == "int":
        dp = config.int_datapath
        g = dp.group_size
        accs = []
        for end in range(g, len(a) + g, g):
            end = min(end, len(a))
            accs.append(golden.dot_int(a[:end], b[:end], dp) & (2 ** dp.acc_bits - 1))
        return accs
    fp = config.float_datapath
    va, vb = golden_values(config, "a", a, a_scales), golden_values(config, "b", b, b_scales)
    g = fp.group_size
    facc = FloatFormat.named(fp.accumulator)
    return [value_bits(facc, golden.dot_values(va[:min(end, len(a))], vb[:min(end, len(a))], fp))
            for end in range(g, len(a) + g, g)]


def vectors(config: AcceleratorConfig, seed: int = 0) -> tuple[list[Vector], list[int], int]:
    """Input cycles, expected accumulator per cycle, and the number of dot products."""
    rng = random.Random(seed)
    pairs = _int_operands(config, rng) if config.datapath == "int" else _float_operands(config, rng)
    g = (config.int_datapath or config.float_datapath).group_size
    sides = mx_sides(config.float_datapath) if config.datapath == "float" else ()
    cycles: list[Vector] = []
    expected: list[int] = []
    for a, b in pairs:
        scales = {side: _mx_scales(len(a), config.float_datapath.mx_block, rng) for side in sides}
        cycles.extend(group_stream(a, b, g, {f"{side}_scale": (s, config.float_datapath.mx_block)
                                             for side, s in scales.items()}))
        expected.extend(golden_accumulators(config, a, b, scales.get("a"), scales.get("b")))
    return cycles, expected, len(pairs)


TESTBENCH = """`timescale 1ns/1ps
// Self-checking test bench of dot_unit ({name}): one cycle per line of inputs.hex, the accumulator
// after that clock checked against expected.hex (golden model). Prints PASS or the first mismatch.
module tb_dot_unit;
  localparam N = {n};
  localparam IW = {iw};
  localparam OW = {ow};
  reg clk = 1'b0;
  reg rst = 1'b1;
  reg [IW-1:0] i = {{IW{{1'b0}}}};
  wire [OW-1:0] o;
  reg [IW-1:0] vin [0:N-1];
  reg [OW-1:0] vexp [0:N-1];
  integer c;
  dot_unit dut (.clk(clk), .rst(rst), .i(i), .o(o));
  always #5 clk = ~clk;
  initial begin
    $readmemh("inputs.hex", vin);
    $readmemh("expected.hex", vexp);
    @(posedge clk);
    #1 rst = 1'b0;
    for (c = 0; c < N; c = c + 1) begin
      i = vin[c];
      @(posedge clk);
      #1;
      if (o !== vexp[c]) begin
        $display("FAIL: vector %0d: acc %h, expected %h (inputs %h)", c, o, vexp[c], vin[c]);
        $fatal(1, "dot_unit differs from the golden model");
      end
    end
    $display("PASS: %0d vectors, %0d dot products", N, {dots});
    $finish;
  end
endmodule
"""

TB_ELEMENT = """`timescale 1ns/1ps
// Self-checking test bench of the element {name} ({config}) on its own: packed inputs per line of
// inputs.hex, its outputs checked against expected.hex (golden model). Prints PASS or the first mismatch.
module tb_{name};
  localparam N = {n};
  localparam IW = {iw};
  localparam OW = {ow};
  reg [IW-1:0] i = {{IW{{1'b0}}}};
  wire [OW-1:0] o;
  reg [IW-1:0] vin [0:N-1];
  reg [OW-1:0] vexp [0:N-1];
  integer c;
  {name}_packed dut (.i(i), .o(o));
  initial begin
    $readmemh("inputs.hex", vin);
    $readmemh("expected.hex", vexp);
    for (c = 0; c < N; c = c + 1) begin
      i = vin[c];
      #1;
      if (o !== vexp[c]) begin
        $display("FAIL: vector %0d: outputs %h, expected %h (inputs %h)", c, o, vexp[c], vin[c]);
        $fatal(1, "{name} differs from the golden model");
      end
    end
    $display("PASS: %0d vectors", N);
    $finish;
  end
endmodule
"""

README = """# {name}: dot-product unit, elements and a self-checking test bench

Generated by `vitaccel hw export --accelerator {name}` from `config.yaml` (vitaccel.hw, Amaranth HDL).

- `dot_unit.v`: the whole dot-product unit (G = {g} lanes, adder tree, accumulator{storage}) with packed
  ports: `i` ({iw} bits per clock: {layout}), `o` = the running accumulator ({ow} bits: {result}),
  `clk`, `rst` (synchronous, active high).
- `elements/*.v`: each combinational element on its own ({elements}).
- `inputs.hex`, `expected.hex`: {n} clocks ({dots} dot products, random and crafted: K off multiples of
  G{tile}, forced overflow, specials) and the golden model's accumulator after each (`$readmemh`).
- `tb_dot_unit.v`: feeds one line per clock and compares the accumulator; prints `PASS` or the first
  mismatch and exits non-zero (`$fatal`).
- `benches/NAME/`: the same for an element on its own ({benches}): `NAME_packed.v` (the element
  behind packed ports `i`, `o`), golden `inputs.hex`/`expected.hex` and `tb.v`. Run each likewise:
  `cd benches/NAME && iverilog -g2012 -o tb.vvp tb.v NAME_packed.v && vvp tb.vvp`.

Run it (from this folder):

    iverilog -g2012 -o tb.vvp tb_dot_unit.v dot_unit.v && vvp tb.vvp

or with Verilator 5:

    verilator --binary --timing -Wno-fatal --top-module tb_dot_unit tb_dot_unit.v dot_unit.v && ./obj_dir/Vtb_dot_unit
"""


def export(config: AcceleratorConfig | str, out: str | Path, seed: int = 0, progress: bool = False) -> Exported:
    """Write the Verilog, vectors, test bench and README of one config into ``out``."""
    from tqdm import tqdm

    circuits = build(config)
    config = circuits.config
    out = Path(out)
    (out / "elements").mkdir(parents=True, exist_ok=True)
    top = Packed(circuits.dot, 1)
    iw, ow = top.in_width, top.out_width
    names = list(circuits.makers)
    benches = [n for n in names if n in GENERATORS]
    steps = tqdm(total=len(names) + len(benches) + 2, desc=f"export {config.name}", disable=not progress, leave=False)
    files = [out / "dot_unit.v"]
    files[0].write_text(to_verilog(top, "dot_unit"))
    steps.update()
    for name in names:
        path = out / "elements" / f"{name}.v"
        path.write_text(to_verilog(circuits.makers[name](), name))
        files.append(path)
        steps.update()
    for name in benches:
        folder = out / "benches" / name
        folder.mkdir(parents=True, exist_ok=True)
        packed = Packed(circuits.makers[name], 1)
        ins, outs = element_vectors(config, name, seed)
        (folder / f"{name}_packed.v").write_text(to_verilog(packed, f"{name}_packed"))
        (folder / "inputs.hex").write_text("".join(f"{packed.pack([v]):0{(packed.in_width + 3) // 4}x}\n" for v in ins))
        (folder / "expected.hex").write_text("".join(f"{packed.pack_outputs(v):0{(packed.out_width + 3) // 4}x}\n"
                                                     for v in outs))
        (folder / "tb.v").write_text(TB_ELEMENT.format(name=name, config=config.name, n=len(ins), iw=packed.in_width,
                                                       ow=packed.out_width))
        files += [folder / f for f in (f"{name}_packed.v", "inputs.hex", "expected.hex", "tb.v")]
        steps.update()
    cycles, expected, dots = vectors(config, seed)
    (out / "inputs.hex").write_text("".join(f"{top.pack([c]):0{(iw + 3) // 4}x}\n" for c in cycles))
    (out / "expected.hex").write_text("".join(f"{e:0{(ow + 3) // 4}x}\n" for e in expected))
    (out / "tb_dot_unit.v").write_text(TESTBENCH.format(name=config.name, n=len(cycles), iw=iw, ow=ow, dots=dots))
    (out / "config.yaml").write_text(config.to_yaml())
    g = (config.int_datapath or config.float_datapath).group_size
    groups: dict[str, list[int]] = {}
    for p in top.ports:
        if p.is_input:
            groups.setdefault(p.name.split("[")[0], []).append(p.width)
    layout = ", ".join(f"{n}: {len(w)} x {w[0]}" if len(w) > 1 else f"{n}: {w[0]}" for n, w in groups.items())
    layout += ", LSB first"
    storage = ""
    tile = ""
    if config.datapath == "int" and config.int_datapath.psum_storage is not None:
        storage = ", partial-sum storage"
        tile = f" and tile_k = {config.int_datapath.psum_storage.tile_k}"
    result = (f"signed {config.int_datapath.acc_bits}-bit accumulator" if config.datapath == "int"
              else f"bits of the {config.float_datapath.accumulator} accumulator")
    (out / "README.md").write_text(README.format(name=config.name, g=g, storage=storage, iw=iw, layout=layout, ow=ow,
                                                 result=result, elements=", ".join(names), n=len(cycles), dots=dots,
                                                 tile=tile, benches=", ".join(benches)))
    steps.update()
    steps.close()
    files += [out / f for f in ("inputs.hex", "expected.hex", "tb_dot_unit.v", "config.yaml", "README.md")]
    return Exported(out, len(cycles), dots, files)
