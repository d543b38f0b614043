"""The dense/sparse training recipe (DESIGN.md section 10): dense teachers and SaiT students.

``train(load_config("digits-teacher"))`` trains a dense ViT; ``recipe: sait`` trains a student
that alternates dense (odd) and pruned (even) epochs with token distillation from a teacher's
CLS attention. ``model_from_checkpoint`` rebuilds a trained model (pruning-patched);
``validate``/``validate_at``/``sweep`` measure it at one or many densities.
"""

from vitaccel.errors import CheckpointError
from vitaccel.train.build import model_from_checkpoint
from vitaccel.train.checkpoint import load_checkpoint
from vitaccel.train.config import TrainConfig, load_config
from vitaccel.train.densities import DEFAULT_VALUES, sweep
from vitaccel.train.loop import train
from vitaccel.train.validation import val_loader, validate, validate_at

__all__ = ["CheckpointError", "DEFAULT_VALUES", "TrainConfig", "load_checkpoint", "load_config",
           "model_from_checkpoint", "sweep", "train", "val_loader", "validate", "validate_at"]
