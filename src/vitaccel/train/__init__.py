"""The dense/sparse training recipe (DESIGN.md section 10): dense teachers and SaiT students.

``train(load_config("digits-teacher"))`` trains a dense ViT; ``recipe: sait`` trains a student
that alternates dense (odd) and pruned (even) epochs with token distillation from a teacher's
CLS attention. ``model_from_checkpoint`` rebuilds a trained model (pruning-patched);
``evaluate``/``evaluate_at``/``sweep`` measure it at one or many densities.
"""

from vitaccel.train.build import model_from_checkpoint
from vitaccel.train.checkpoint import CheckpointError, load_checkpoint
from vitaccel.train.config import TrainConfig, load_config
from vitaccel.train.evaluate import evaluate, evaluate_at, val_loader
from vitaccel.train.loop import train
from vitaccel.train.sweep import DEFAULT_VALUES, sweep

__all__ = ["CheckpointError", "DEFAULT_VALUES", "TrainConfig", "evaluate", "evaluate_at", "load_checkpoint",
           "load_config", "model_from_checkpoint", "sweep", "train", "val_loader"]
