"""Adaptive token pruning for timm vision transformers (DESIGN.md section 9).

``patch(model, layer=4, rule="mass", value=0.9)`` scores patch tokens with the CLS attention at
layer P, keeps a per-image subset, fuses the rest into one package token and runs the later
blocks on fewer tokens; ``model.pruning.configure(...)`` switches rule, value or dense mode on the
same weights. ``cls_attention`` gives a dense teacher's distillation target.
"""

from vitaccel.prune.config import PLACEMENTS, RULES, PruneConfig
from vitaccel.prune.patching import Pruning, Stage, patch, unpatch
from vitaccel.prune.scores import cls_attention
from vitaccel.prune.select import keep_mask, topk_count

__all__ = ["PLACEMENTS", "RULES", "PruneConfig", "Pruning", "Stage", "patch", "unpatch", "cls_attention", "keep_mask",
           "topk_count"]
