"""Regenerate the README's measured tables from the commands that produce them, or check them.

    python scripts/readme_tables.py            # print the tables
    python scripts/readme_tables.py --check    # exit 1 when README.md differs (tests/test_readme.py, slow)
    python scripts/readme_tables.py --write    # rewrite them in README.md

- the demo table: ``vitaccel demo`` (its ``results.json``; run first when missing);
- the training table: ``vitaccel eval`` of the demo's cached teacher and student (the README's
  ``digits-teacher`` / ``digits-sait`` recipes, seed 0, final-epoch weights).

Each table is found by its header line, so the script rewrites only the rows under it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

DEMO_HEADER = "| accelerator | density | top-1 % | MACs (M) | energy µJ | tier |"
DEMO_ROWS = [("fp32", "dense"), ("fp32", "mass=0.8"), ("fp13", "dense"), ("fp13", "mass=0.8"), ("bf16", "mass=0.8"),
             ("int8", "dense"), ("int8-dyn", "dense"), ("int8-lot4", "dense"), ("int8-lot4n-dyn", "dense"),
             ("int8-lot4-psum", "dense"), ("int8-lot4-psum", "mass=0.8"), ("int8-lot4-psum", "mass=0.6")]
TRAIN_HEADER = "| model | top-1 | patches after P | MACs / image |"


def demo_rows(results: dict) -> list[str]:
    """The README's selection of the demo's accelerator x density runs."""
    runs = {(r["accelerator"], r["density"]): r for r in results["runs"]}
    return [f"| {a} | {d} | {runs[a, d]['top1']:.2f} | {runs[a, d]['macs'] / 1e6:.2f} | "
            f"{runs[a, d]['energy_uj']:.2f} | {runs[a, d]['tier']} |" for a, d in DEMO_ROWS]


def training_rows(cache: Path) -> list[str]:
    """Teacher and student of the demo's cache at the README's densities (``vitaccel eval``)."""
    from vitaccel.commands.eval import run_eval

    teacher, student = cache / "teacher-s0" / "last.pt", cache / "sait-s0" / "last.pt"

    def at(path: Path, rule: str | None = None, value: float | None = None, layer: int | None = None,
           dense: bool = False) -> dict:
        (row,) = run_eval(str(path), rule=rule, value=value, layer=layer, dense=dense, progress=False)
        return row

    t_dense, s_dense = at(teacher, dense=True), at(student, dense=True)
    t85, t80 = at(teacher, "mass", 0.85, 1), at(teacher, "mass", 0.8, 1)
    s75, s70 = at(student, "mass", 0.75), at(student, "mass", 0.7)
    patches = round(t_dense["kept"])
    return [
        f"| teacher, dense | {t_dense['acc']:.2f}% | {patches} | {t_dense['macs'] / 1e6:.1f} M |",
        f"| teacher pruned as is (P=1, mass 0.85 / 0.8) | {t85['acc']:.2f}% / {t80['acc']:.2f}% | "
        f"{t85['kept']:.1f} / {t80['kept']:.1f} | {100 * t85['macs_ratio']:.1f}% / {100 * t80['macs_ratio']:.1f}% |",
        f"| SaiT student, dense | {s_dense['acc']:.2f}% | {patches} | {s_dense['macs'] / 1e6:.1f} M |",
        f"| SaiT student, P=1, mass 0.75 (trained density) | {s75['acc']:.2f}% | {s75['kept']:.1f} ± "
        f"{s75['kept_std']:.1f} | {100 * s75['macs_ratio']:.1f}% ({100 * (s75['macs_ratio'] - 1):.1f}%) |",
        f"| SaiT student, P=1, mass 0.7 | {s70['acc']:.2f}% | {s70['kept']:.1f} ± {s70['kept_std']:.1f} | "
        f"{100 * s70['macs_ratio']:.1f}% ({100 * (s70['macs_ratio'] - 1):.0f}%) |",
    ]


def replace_rows(text: str, header: str, rows: list[str]) -> str:
    """``text`` with the rows of the table under ``header`` replaced by ``rows``."""
    lines = text.split("\n")
    start = lines.index(header) + 2  # header, then the |---| line
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[:start] + rows + lines[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=ROOT / "vitaccel-demo", help="the demo's output folder")
    parser.add_argument("--cache", type=Path, default=None, help="the demo's cache (default ~/.cache/vitaccel/demo)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="exit 1 when README.md differs")
    what.add_argument("--write", action="store_true", help="rewrite the tables in README.md")
    args = parser.parse_args(argv)

    from vitaccel.commands.demo import _cache_dir

    cache = args.cache or _cache_dir()
    results = args.demo / "results.json"
    if not results.is_file():
        subprocess.run([sys.executable, "-m", "vitaccel", "demo", "--out", str(args.demo), "--cache", str(cache)],
                       check=True)
    tables = {DEMO_HEADER: demo_rows(json.loads(results.read_text())), TRAIN_HEADER: training_rows(cache)}
    old = README.read_text()
    new = old
    for header, rows in tables.items():
        new = replace_rows(new, header, rows)
        print("\n".join([header, *rows]), end="\n\n")
    if args.check and new != old:
        print("README.md differs from the tables above; run python scripts/readme_tables.py --write", file=sys.stderr)
        return 1
    if args.write:
        README.write_text(new)
        print(f"wrote {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
