"""``patch`` / ``unpatch``: adaptive token pruning on a timm ``VisionTransformer``, in place.

ToMe-style: the model's class is swapped for a subclass that overrides ``forward_features``
(and ``pool`` for avg pooling over real tokens) and a small ``model.pruning`` controller is
attached. No weight, buffer or module is added and no hook outlives a forward, so
``state_dict`` is unchanged and ``unpatch`` restores the original model exactly. Deep copies and
pickles of a patched model keep its pruning settings, not the last forward's results.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from vitaccel.errors import ConfigError
from vitaccel.prune._timm import (
    VisionTransformer,
    check_prunable,
    embed,
    run_attention_part,
    run_block,
    run_block_part,
)
from vitaccel.prune.config import PruneConfig
from vitaccel.prune.macs import Coefficients, coefficients, image_macs
from vitaccel.prune.pack import pack
from vitaccel.prune.rows import RealRows, run_bucketed
from vitaccel.prune.scores import cls_scores
from vitaccel.prune.select import keep_mask, topk_count


class Stage(NamedTuple):
    """One pruning stage's results: what it scored and what it kept (per image, batch order)."""

    tis: torch.Tensor     # (B, W) TIS over the tokens it scored (after the prefix), rows sum to 1
    index: torch.Tensor   # (B, W) original patch of each scored token; -1: a package token or padding
    keep: torch.Tensor    # (B, W) bool, the scored tokens kept


class Pruning:
    """``model.pruning``: run-time control and the last forward's results.

    Attributes after each forward (per image, batch order):

    - ``tis``: (B, N_patches) token importance at the first pruning layer, rows sum to 1,
      autograd graph kept;
    - ``stages``: one ``Stage`` per pruning layer (``stages[0].tis`` is ``tis``);
    - ``keep``: (B, N_patches) bool, the patch tokens kept after the last stage (all True when dense);
    - ``stats``: dict of int64 (B,) tensors: ``tokens`` (sequence length blocks P+1..L process:
      prefix tokens, kept patches and the package token), ``kept`` (patch tokens kept), ``macs``
      (multiply-accumulates for the image's real tokens) and ``macs_padded`` (what was executed
      for it: the per-token layers skip padding, attention runs over the padded length);
    - ``valid``: (B, L_max) bool, the real (non-padding) tokens after pruning; None when the
      batch needed no padding.
    """

    def __init__(self, config: PruneConfig, depth: Optional[int] = None) -> None:
        self.config = config
        self.depth = depth
        self.tis: Optional[torch.Tensor] = None
        self.stages: list[Stage] = []
        self.keep: Optional[torch.Tensor] = None
        self.stats: dict[str, torch.Tensor] = {}
        self.valid: Optional[torch.Tensor] = None
        self._coefficients: dict[tuple, Coefficients] = {}

    def coefficients(self, model: nn.Module) -> Coefficients:
        """The MAC ``coefficients`` of ``model`` under the current settings, computed once per setting
        (``configure`` starts afresh, e.g. after the model's linear layers were changed)."""
        cfg = self.config
        key = (cfg.stages, cfg.placement, cfg.package and not cfg.dense)
        if key not in self._coefficients:
            self._coefficients[key] = coefficients(model, *key)
        return self._coefficients[key]

    def configure(self, rule: Optional[str] = None, value: Optional[float | list[float]] = None,
                  dense: Optional[bool] = None, package: Optional[bool] = None,
                  layer: Optional[int] = None, layers: Optional[list[int]] = None,
                  placement: Optional[str] = None) -> "Pruning":
        """Change any setting of ``PruneConfig`` (None keeps the current one).

        ``layer`` sets one stage, ``layers`` several. Validated as a whole (also against the
        model, when the new layers are checked by the caller ``patch``): on error nothing
        changes. Returns ``self``.
        """
        changes = dict(rule=rule, value=value, dense=dense, package=package, placement=placement)
        changes = {k: v for k, v in changes.items() if v is not None}
        if layer is not None or layers is not None:
            changes.update(layer=self.config.layer if layer is None else layer, layers=layers)
        config = dataclasses.replace(self.config, **changes)
        if self.depth is not None:
            _check_stages(config, self.depth)
        self.config = config
        self._coefficients.clear()
        return self

    def record(self, stages: list[Stage], keep: torch.Tensor, valid: Optional[torch.Tensor],
               stats: dict[str, torch.Tensor]) -> None:
        """Store a forward's results (called by the patched model)."""
        self.stages, self.tis, self.keep, self.valid, self.stats = stages, stages[0].tis, keep, valid, stats

    def __getstate__(self) -> dict:
        # Results hold autograd graphs that cannot be copied or pickled; a copy starts without.
        return {"config": self.config, "depth": self.depth}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"], state.get("depth"))

    def __repr__(self) -> str:
        return f"Pruning({self.config})"


BUCKETS = 4       # sub-batches of a padded batch after the last stage
BUCKET_MIN = 16   # the smallest batch that is split


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
        prefix = self.num_prefix_tokens
        num_patches = x.shape[1] - prefix
        index = torch.arange(num_patches, device=x.device).expand(x.shape[0], -1)
        valid = rows = None
        part = cfg.placement == "attention"
        stages, lengths, widths, start, padded = [], [], [], 0, False
        for layer, value in zip(cfg.stages, cfg.values):
            for blk in self.blocks[start:layer - 1]:
                x = _run_block(self, blk, x, rows)
            scored = self.blocks[layer - 1]
            x, qkv = _run_block(self, scored, x, rows, "scored")
            if not part:
                x = _run_block(self, scored, x, rows, "mlp")
            tis = cls_scores(scored.attn, qkv, prefix, valid)
            real = None if valid is None else valid[:, prefix:]
            if cfg.dense:
                keep = torch.ones_like(tis, dtype=torch.bool)
                stages.append(Stage(tis, index, keep))
                lengths.append(torch.full_like(keep[:, 0], x.shape[1], dtype=torch.int64))
            else:
                keep = keep_mask(tis, cfg.rule, value, real)
                stages.append(Stage(tis, index, keep))
                count = topk_count(value, tis.shape[1]) if cfg.rule == "topk" and real is None else None
                x, length, valid, index = pack(x, tis, keep, prefix, cfg.package, index, real, count)
                rows = None if valid is None else RealRows(valid)
                padded = padded or valid is not None
                lengths.append(length)
            widths.append(x.shape[1])
            if part:
                x = _run_block(self, scored, x, rows, "mlp")
            start = layer
        x = self._run_tail(x, start, valid, rows, widths)
        packaged = cfg.package and not cfg.dense
        kept = index.new_zeros(x.shape[0], num_patches + 1).scatter_(
            1, torch.where(index >= 0, index, num_patches), 1)[:, :num_patches].bool()
        coeffs = self.pruning.coefficients(self)
        work = image_macs(self, num_patches, cfg.stages, cfg.placement, lengths, packaged, coeffs=coeffs)
        self.pruning.record(stages, kept, valid, {
            "tokens": lengths[-1],
            "kept": kept.sum(dim=1),
            "macs": work,
            # no stage padded: every image ran at its own length, what was executed is what it needed
            "macs_padded": work if not padded else image_macs(self, num_patches, cfg.stages, cfg.placement,
                                                              lengths, packaged, widths=widths, coeffs=coeffs),
        })
        return self.norm(x)

    def _run_tail(self, x: torch.Tensor, start: int, valid: Optional[torch.Tensor], rows: Optional[RealRows],
                  widths: list) -> torch.Tensor:
        """Blocks ``start``.. after the last stage; a padded batch of ``BUCKET_MIN`` images or more runs
        in ``BUCKETS`` length-sorted sub-batches (``widths[-1]`` becomes each image's width)."""
        def run(h: torch.Tensor, part_rows: Optional[RealRows]) -> torch.Tensor:
            for blk in self.blocks[start:]:
                h = _run_block(self, blk, h, part_rows)
            return h

        if valid is None or x.shape[0] < BUCKET_MIN or start == len(self.blocks):
            return run(x, rows)
        x, widths[-1] = run_bucketed(run, x, valid, BUCKETS)
        return x

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


def _parts(blk: nn.Module, x: torch.Tensor, mask: Optional[torch.Tensor], part: Optional[str]):
    if part is None:
        return run_block(blk, x, mask)
    return run_attention_part(blk, x, mask) if part == "scored" else run_block_part(blk, x, mask, part)


def _block_forward(blk: nn.Module, x: torch.Tensor, rows: Optional[RealRows], part: Optional[str]):
    if rows is None:
        return _parts(blk, x, None, part)
    with rows.only(blk):
        return _parts(blk, x, rows.attn_mask, part)


def _run_block(model: nn.Module, blk: nn.Module, x: torch.Tensor, rows: Optional[RealRows] = None,
               part: Optional[str] = None):
    """Block ``blk`` on ``x``, padding handled by ``rows``; or one ``part``: "mlp", or "scored" (the
    attention part, returning ``(x, qkv output)`` for the CLS scores)."""
    # The padding hooks live inside the checkpointed function, so recomputation sees them too.
    if model.grad_checkpointing and torch.is_grad_enabled():
        return checkpoint(_block_forward, blk, x, rows, part, use_reentrant=False)
    return _block_forward(blk, x, rows, part)


_CLASSES: dict[type, type] = {}


def _pruned_class(cls: type) -> type:
    """``Pruned<cls>``, created once; also a module attribute, so that pickle finds it by name."""
    if cls not in _CLASSES:
        name = f"Pruned{cls.__name__}"
        _CLASSES[cls] = type(name, (PrunedViT, cls), {"_vitaccel_base": cls, "__module__": __name__})
        globals().setdefault(name, _CLASSES[cls])
    return _CLASSES[cls]


_pruned_class(VisionTransformer)  # importable before any patch, for unpickling


def _check_stages(config: PruneConfig, depth: int) -> None:
    """Raise ConfigError when ``config``'s pruning layers do not fit a ``depth``-block model."""
    if config.stages[-1] > depth:
        key = "layers" if config.layers is not None else "layer"
        shown = config.layers if config.layers is not None else config.layer
        raise ConfigError(f"{key}: value {shown!r} is out of range; the pruning layer P is 1-based, "
                          f"use 1 <= layer <= {depth} for this {depth}-block model")


def patch(model: nn.Module, layer: int = 4, rule: str = "mass", value: float | list[float] = 0.9,
          package: bool = True, layers: Optional[list[int]] = None, placement: str = "block") -> nn.Module:
    """Add adaptive token pruning to a timm ``VisionTransformer`` in place; returns the model.

    ``layer`` is P (1-based): TIS is computed in block P's attention and the blocks after it run
    on the kept tokens (+ the package token when ``package``); ``layers=[4, 7, 10]`` prunes in
    several stages (``value`` one number, or one per stage). ``placement="attention"`` prunes
    inside block P, after its attention and before its MLP. ``rule`` / ``value``: ``topk`` (keep
    fraction, ``0 < value <= 1``), ``value`` (keep TIS >= value / N, ``value >= 0``) or ``mass``
    (``0 < value <= 1``); see ``vitaccel.prune.select.keep_mask``. Change any of them at run time
    with ``model.pruning.configure(...)``; ``dense=True`` runs the unpruned model (same outputs as
    the unpatched one, TIS still computed).
    """
    if isinstance(model, PrunedViT):
        raise ValueError("model: is already pruning-patched; call vitaccel.prune.unpatch(model) first")
    check_prunable(model, layer if layers is None else 1)  # the model (and a single layer) first
    config = PruneConfig(layer=layer, layers=layers, rule=rule, value=value, package=package,
                         placement=placement)
    _check_stages(config, len(model.blocks))
    model.__class__ = _pruned_class(type(model))
    model.pruning = Pruning(config, len(model.blocks))
    return model


def unpatch(model: nn.Module) -> nn.Module:
    """Undo ``patch``: restore the model's own class and remove ``model.pruning``; returns the model."""
    if not isinstance(model, PrunedViT):
        raise ValueError(f"model: {type(model).__name__} is not pruning-patched")
    model.__class__ = type(model)._vitaccel_base
    del model.pruning
    return model
