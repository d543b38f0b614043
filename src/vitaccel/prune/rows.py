"""Per-token layers on real tokens only, inside a padded variable-length batch.

Attention needs the padded layout (one sequence per image, padding masked out of the keys), but
the per-token layers do not: the qkv and output projections and the MLP, most of a block's MACs,
process each token on its own. Forward hooks gather the real rows before those layers and scatter
their outputs back (zeros on padding) after them, so timm's block code runs unchanged while the
padding costs only attention work. Results equal the padded computation row for row.
``buckets`` cuts that attention work too: images sorted by length run the later blocks in a few
sub-batches, each padded only to its own longest image.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn as nn

from vitaccel.prune._timm import per_token_layers


class RealRows:
    """The real (non-padding) rows of a padded (B, L, C) batch, given its (B, L) bool mask."""

    def __init__(self, valid: torch.Tensor) -> None:
        self.batch, self.length = valid.shape
        self.index = valid.flatten().nonzero().squeeze(1)
        self.attn_mask = valid[:, None, None, :]  # SDPA boolean mask: True = attend to this key

    def _gather(self, _module: nn.Module, args: tuple) -> tuple:
        return (args[0].flatten(0, 1).index_select(0, self.index), *args[1:])

    def _scatter(self, _module: nn.Module, _args: tuple, out: torch.Tensor) -> torch.Tensor:
        full = out.new_zeros(self.batch * self.length, out.shape[-1])
        return full.index_copy_(0, self.index, out).view(self.batch, self.length, -1)

    @contextmanager
    def only(self, block: nn.Module) -> Iterator[None]:
        """Run ``block``'s qkv, proj and MLP on the real rows while the context is open."""
        handles = []
        try:
            for layer in per_token_layers(block):
                handles.append(layer.register_forward_pre_hook(self._gather))
                # prepend: other hooks on the layer see the scattered, padded output
                handles.append(layer.register_forward_hook(self._scatter, prepend=True))
            yield
        finally:
            for handle in handles:
                handle.remove()


def buckets(valid: torch.Tensor, count: int) -> list[tuple[torch.Tensor, int]]:
    """Split a padded batch into ``count`` sub-batches of similar length: (image indices, width).

    Images are sorted by their real length and cut into equal parts (one host sync); each part's
    width is its longest image. Empty parts are left out.
    """
    lengths = valid.sum(dim=1)
    order = lengths.argsort(stable=True)
    parts = [part for part in order.tensor_split(count) if len(part)]
    widths = torch.stack([lengths[part[-1]] for part in parts]).tolist()
    return list(zip(parts, widths))


def run_bucketed(run: Callable[[torch.Tensor, RealRows | None], torch.Tensor], x: torch.Tensor,
                 valid: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``run(x_part, rows)`` on each bucket of ``x`` (B, L, C); returns the reassembled output (zeros
    on padding) and each image's attended width (B,)."""
    out = x.new_zeros(x.shape)
    width = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
    for part, w in buckets(valid, count):
        part_valid = valid[part, :w]
        rows = None if bool(part_valid.all()) else RealRows(part_valid)
        out[part, :w] = run(x[part, :w], rows)
        width[part] = w
    return out, width
