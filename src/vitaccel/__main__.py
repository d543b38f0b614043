"""``python -m vitaccel`` runs the command line (also what ``torchrun -m vitaccel`` launches)."""

from vitaccel.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
