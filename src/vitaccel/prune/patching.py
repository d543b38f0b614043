"""``patch`` / ``unpatch``: adaptive token pruning on a timm ``VisionTransformer``, in place.

ToMe-style: the model's class is swapped for a subclass that overrides ``forward_features``
(and ``pool`` for avg pooling over real tokens) and a small ``model.pruning`` controller is
attached. No weight, buffer or module is added and no hook outlives a forward, so
``state_dict`` is unchanged and ``unpatch`` restores the original model exactly. Deep copies and
pickles of a patched model keep its pruning settings, not the last forward's results.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from vitaccel.prune._timm import VisionTransformer, check_prunable, embed, qkv_layer, run_block
from vitaccel.prune.config import PruneConfig
from vitaccel.prune.macs import image_macs
from vitaccel.prune.pack import pack
from vitaccel.prune.rows import RealRows
from vitaccel.prune.scores import capture_output, cls_scores
from vitaccel.prune.select import keep_mask


class Pruning:
    """``model.pruning``: run-time control and the last forward's results.

    Attributes after each forward (per image, batch order):

    - ``tis``: (B, N_patches) token importance at layer P, rows sum to 1, autograd graph kept;
    - ``keep``: (B, N_patches) bool, the patch tokens kept (all True when dense);
    - ``stats``: dict of int64 (B,) tensors: ``tokens`` (sequence length blocks P+1..L process:
      prefix tokens, kept patches and the package token), ``kept`` (patch tokens kept), ``macs``
      (multiply-accumulates for the image's real tokens) and ``macs_padded`` (what was executed
      for it: the per-token layers skip padding, attention runs over the padded length);
    - ``valid``: (B, L_max) bool, the real (non-padding) tokens after pruning; None when the
      batch needed no padding.
    """

    def __init__(self, config: PruneConfig) -> None:
        self.config = config
        self.tis: Optional[torch.Tensor] = None
        self.keep: Optional[torch.Tensor] = None
        self.stats: dict[str, torch.Tensor] = {}
        self.valid: Optional[torch.Tensor] = None

    def configure(self, rule: Optional[str] = None, value: Optional[float] = None,
                  dense: Optional[bool] = None, package: Optional[bool] = None) -> "Pruning":
        """Change the rule, its value, dense mode or packaging (None keeps the current setting).

        Validated as a whole: on error nothing changes. Returns ``self``.
        """
        changes = dict(rule=rule, value=value, dense=dense, package=package)
        self.config = dataclasses.replace(self.config, **{k: v for k, v in changes.items() if v is not None})
        return self

    def record(self, tis: torch.Tensor, keep: torch.Tensor, valid: Optional[torch.Tensor],
               stats: dict[str, torch.Tensor]) -> None:
        """Store a forward's results (called by the patched model)."""
        self.tis, self.keep, self.valid, self.stats = tis, keep, valid, stats

    def __getstate__(self) -> dict:
        # Results hold autograd graphs that cannot be copied or pickled; a copy starts without.
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    def __repr__(self) -> str:
        return f"Pruning({self.config})"


class PrunedViT:
    """Mixin placed before the model's own class by ``patch``."""

    _vitaccel_base: type

    def forward_features(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                         is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("attn_mask/is_causal: not supported on a pruning-patched model "
                             "(pruning builds its own padding mask)")
        cfg = self.pruning.config
        x = embed(self, x)
        num_patches = x.shape[1] - self.num_prefix_tokens
        for blk in self.blocks[:cfg.layer - 1]:
            x = _run_block(self, blk, x)
        scored = self.blocks[cfg.layer - 1]
        with capture_output(qkv_layer(scored)) as qkv:
            x = scored(x)
        tis = cls_scores(scored.attn, qkv[0], self.num_prefix_tokens)
        if cfg.dense:
            keep = torch.ones_like(tis, dtype=torch.bool)
            lengths, valid = torch.full_like(keep[:, 0], x.shape[1], dtype=torch.int64), None
        else:
            keep = keep_mask(tis, cfg.rule, cfg.value)
            x, lengths, valid = pack(x, tis, keep, self.num_prefix_tokens, cfg.package)
        rows = None if valid is None else RealRows(valid)
        for blk in self.blocks[cfg.layer:]:
            x = _run_block(self, blk, x, rows)
        packaged = cfg.package and not cfg.dense
        self.pruning.record(tis, keep, valid, {
            "tokens": lengths,
            "kept": keep.sum(dim=1),
            "macs": image_macs(self, num_patches, cfg.layer, lengths, packaged),
            "macs_padded": image_macs(self, num_patches, cfg.layer, lengths, packaged,
                                      attended=torch.full_like(lengths, x.shape[1])),
        })
        return self.norm(x)

    def pool(self, x: torch.Tensor, pool_type: Optional[str] = None) -> torch.Tensor:
        valid = self.pruning.valid
        pool_type = self.global_pool if pool_type is None else pool_type
        if valid is None or pool_type == "token":
            return super().pool(x, pool_type)
        if pool_type != "avg":
            raise ValueError(f"pool_type: value {pool_type!r} is not supported with padded "
                             "pruned batches; use 'token' or 'avg'")
        real = valid[:, self.num_prefix_tokens:, None].to(x.dtype)
        return (x[:, self.num_prefix_tokens:] * real).sum(dim=1) / real.sum(dim=1)


def _block_forward(blk: nn.Module, x: torch.Tensor, rows: Optional[RealRows]) -> torch.Tensor:
    if rows is None:
        return run_block(blk, x, None)
    with rows.only(blk):
        return run_block(blk, x, rows.attn_mask)


def _run_block(model: nn.Module, blk: nn.Module, x: torch.Tensor,
               rows: Optional[RealRows] = None) -> torch.Tensor:
    # The padding hooks live inside the checkpointed function, so recomputation sees them too.
    if model.grad_checkpointing and torch.is_grad_enabled():
        return checkpoint(_block_forward, blk, x, rows, use_reentrant=False)
    return _block_forward(blk, x, rows)


_CLASSES: dict[type, type] = {}


def _pruned_class(cls: type) -> type:
    """``Pruned<cls>``, created once; also a module attribute, so that pickle finds it by name."""
    if cls not in _CLASSES:
        name = f"Pruned{cls.__name__}"
        _CLASSES[cls] = type(name, (PrunedViT, cls), {"_vitaccel_base": cls, "__module__": __name__})
        globals().setdefault(name, _CLASSES[cls])
    return _CLASSES[cls]


_pruned_class(VisionTransformer)  # importable before any patch, for unpickling


def patch(model: nn.Module, layer: int = 4, rule: str = "mass", value: float = 0.9,
          package: bool = True) -> nn.Module:
    """Add adaptive token pruning to a timm ``VisionTransformer`` in place; returns the model.

    ``layer`` is P (1-based): TIS is computed in block P's attention and blocks P+1..L run on the
    kept tokens (+ the package token when ``package``). ``rule`` / ``value``: ``topk`` (keep
    fraction, ``0 < value <= 1``), ``value`` (keep TIS >= value / N, ``value >= 0``) or ``mass``
    (``0 < value <= 1``); see ``vitaccel.prune.select.keep_mask``. Change them at run time with
    ``model.pruning.configure(...)``; ``dense=True`` runs the unpruned model (same outputs as the
    unpatched one, TIS still computed).
    """
    if isinstance(model, PrunedViT):
        raise ValueError("model: is already pruning-patched; call vitaccel.prune.unpatch(model) first")
    check_prunable(model, layer)
    config = PruneConfig(layer=layer, rule=rule, value=value, package=package)
    model.__class__ = _pruned_class(type(model))
    model.pruning = Pruning(config)
    return model


def unpatch(model: nn.Module) -> nn.Module:
    """Undo ``patch``: restore the model's own class and remove ``model.pruning``; returns the model."""
    if not isinstance(model, PrunedViT):
        raise ValueError(f"model: {type(model).__name__} is not pruning-patched")
    model.__class__ = type(model)._vitaccel_base
    del model.pruning
    return model
