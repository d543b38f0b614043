"""Figures: which tokens a pruned ViT kept (more plots and the report alongside)."""

from vitaccel.viz.masks import token_masks

__all__ = ["token_masks"]
