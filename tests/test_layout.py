"""The package layout DESIGN.md section 1 asks for: no import cycle, no name that is both a submodule
and something else, one module per CLI command with the same interface."""

import argparse
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import vitaccel
from vitaccel.cli import COMMANDS

SRC = Path(vitaccel.__file__).parent
# the shared import-cycle tool sits beside the repository: ../shared/tools/import_cycles.py
TOOL = Path(__file__).resolve().parents[2] / "shared" / "tools" / "import_cycles.py"


def _packages() -> list[str]:
    return ["vitaccel"] + [m.name for m in pkgutil.walk_packages(vitaccel.__path__, "vitaccel.") if m.ispkg]


@pytest.mark.parametrize("package", _packages())
def test_no_package_binds_a_name_that_is_also_its_submodule(package):
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"{package}.{info.name}")
        assert getattr(pkg, info.name) is module, f"{package}.{info.name} is bound to something else"


@pytest.mark.skipif(not TOOL.is_file(), reason="the shared import-cycle tool is not on this machine")
def test_no_import_cycles():
    out = subprocess.run([sys.executable, str(TOOL), str(SRC)], capture_output=True, text=True).stdout
    assert out.strip() == "no import cycles", out


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_module_registers_its_parser_and_runner(name):
    module = importlib.import_module(f"vitaccel.commands.{name}")
    sub = argparse.ArgumentParser().add_subparsers(dest="command")
    module.register(sub)
    assert list(sub.choices) == [name]
    assert sub.choices[name].get_default("func") is module.run
