"""The README runs as written (issue 17): its Python blocks, in order, in one fresh interpreter in an
empty folder, as a reader who pastes them into one session would."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks of ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.S | re.M)


def test_readme_has_the_blocks_this_test_runs():
    python = blocks("python")
    assert len(python) >= 4 and "emulated_matmul" in python[0]
    assert "my_accel.yaml" in python[0] and any("my_accel.yaml" in b for b in blocks("bash"))  # made before use


@pytest.mark.slow
def test_readme_python_blocks_run_in_order(tmp_path):
    script = "\n".join(f"# --- README block {i}\n{b}" for i, b in enumerate(blocks("python")))
    (tmp_path / "readme.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "readme.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "my_accel.yaml").is_file() and (tmp_path / "masks.png").is_file()


@pytest.mark.slow
def test_readme_tables_match_the_commands_that_produce_them():
    # runs the demo first when its results are missing (minutes); trained checkpoints are cached
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_tables.py"), "--check"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
