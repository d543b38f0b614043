"""Per-epoch metrics: JSON lines in ``out_dir/metrics.jsonl`` (rank 0 only), TensorBoard optional."""

from __future__ import annotations

import json
from pathlib import Path

from vitaccel.configtools import ConfigError


class MetricsLog:
    """Appends one JSON object per epoch; ``restart(history)`` rewrites the file on resume.

    The history lives in every checkpoint, so a run killed between writing its checkpoint and
    its metrics line still resumes with exactly one line per finished epoch.
    """

    def __init__(self, out_dir: str | Path, tensorboard: bool = False) -> None:
        self.path = Path(out_dir) / "metrics.jsonl"
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ConfigError("tensorboard: value True is not allowed; the tensorboard package is not "
                                  "installed (pip install tensorboard)") from exc
            self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"))

    def restart(self, history: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in history))

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                    self.writer.add_scalar(key, value, record["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
