"""The nf2vec encoder (seed 003 §III; seeds 001 §3.3): a single-architecture baseline.

The NeRF's weights stacked into rows of width H (``/nf2vec_rows`` of a graph shard, see
``data_specs/graph-shard-v1.md``) go through the same per-row layers (Linear + BatchNorm +
ReLU with widths 512, 512, 1024, 1024), then a max-pool over the rows gives the embedding.
Every NeRF of one architecture has the same number of rows, and the rows' order is the
weights' order: the encoder depends on the architecture (it is not permutation-invariant).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class Nf2vecEncoder(nn.Module):
    """Shapes: forward(rows (B, n_rows, H)) -> (B, widths[-1])."""

    def __init__(self, width: int, widths: Sequence[int] = (512, 512, 1024, 1024)) -> None:
        super().__init__()
        if width < 1 or not widths:
            raise ValueError(f"nf2vec needs a positive row width and layer widths, got {width}, {widths}")
        self.width = width
        layers: list[nn.Module] = []
        prev = width
        for w in widths:
            layers += [nn.Linear(prev, w), nn.BatchNorm1d(w), nn.ReLU(inplace=True)]
            prev = w
        self.layers = nn.Sequential(*layers)
        self.embed_dim = prev

    def forward(self, rows: Tensor) -> Tensor:
        if rows.dim() != 3 or rows.shape[-1] != self.width:
            raise ValueError(f"expected rows of shape (B, n_rows, {self.width}), got {tuple(rows.shape)}")
        b, n, h = rows.shape
        feats = self.layers(rows.reshape(b * n, h)).reshape(b, n, -1)
        return feats.max(dim=1).values
