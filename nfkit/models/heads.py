"""Downstream heads on NeRF embeddings: the supervised classifier.

The reference recipe (seed 000 Appendix B; CVLAB-Unibo/gmnerf ``trainers/classifier.py``):
blocks of Linear -> BatchNorm1d -> ReLU -> Dropout(0.5) with widths 1024, 512, 256, then one
Linear to the class logits. Seed 003 describes nf2vec's classifier as 1024 / 512 / 128; nfkit
follows seed 000 and the gmnerf code (three blocks, 1024 / 512 / 256), the recipe of the
multi-architecture tables it is compared with (seed 000 Tables 2 and 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: seed 000 App. B / gmnerf: hidden widths of the three blocks
PAPER_HIDDEN: tuple[int, ...] = (1024, 512, 256)


class EmbeddingClassifier(nn.Module):
    """MLP classifier of embeddings.

    Args:
        in_dim: embedding width (1024 for the paper's encoder).
        n_classes: number of classes.
        hidden: widths of the Linear -> BN -> ReLU -> Dropout blocks.
        dropout: dropout probability of every block.

    Shapes:
        input (n, in_dim) float -> logits (n, n_classes)
    """

    def __init__(
        self, in_dim: int, n_classes: int, hidden: Sequence[int] = PAPER_HIDDEN, dropout: float = 0.5
    ) -> None:
        super().__init__()
        if in_dim < 1 or n_classes < 2:
            raise ValueError(f"need in_dim >= 1 and n_classes >= 2, got {in_dim}, {n_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.in_dim, self.n_classes = int(in_dim), int(n_classes)
        self.hidden, self.dropout = tuple(int(h) for h in hidden), float(dropout)
        layers: list[nn.Module] = []
        width = self.in_dim
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Dropout(self.dropout)]
            width = h
        layers.append(nn.Linear(width, self.n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"expected embeddings (n, {self.in_dim}), got {tuple(x.shape)}")
        return self.net(x)


def mix_same_class(
    x: torch.Tensor,
    y: torch.Tensor,
    pool_x: torch.Tensor | None = None,
    pool_y: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The reference's same-class feature mixing: each sample takes, per dimension, the value of
    a random sample of its own class (drawn from ``pool_x``/``pool_y``, default the batch itself)
    where ``u < τ`` (u ~ U(0,1) per dimension, τ ~ U(0,1) per sample) and keeps its own value
    where ``u >= τ``. A class absent from the pool leaves its samples unchanged.

    Shapes: x (n, dim), y (n,) int, pool_x (m, dim), pool_y (m,) -> (n, dim) mixed copies.
    """
    if pool_x is None or pool_y is None:
        pool_x, pool_y = x, y
    if x.ndim != 2 or y.shape != (x.shape[0],) or pool_x.ndim != 2 or pool_y.shape != (pool_x.shape[0],):
        raise ValueError(
            f"expected x (n, dim), y (n,), pool (m, dim), (m,); got {tuple(x.shape)}, {tuple(y.shape)}, "
            f"{tuple(pool_x.shape)}, {tuple(pool_y.shape)}"
        )
    n = x.shape[0]
    other = x.clone()
    for c in torch.unique(y).tolist():
        rows = torch.nonzero(y == c).flatten()
        cands = torch.nonzero(pool_y == c).flatten()
        if cands.numel() == 0:
            continue
        pick = torch.randint(0, cands.numel(), (rows.numel(),), generator=generator)
        other[rows] = pool_x[cands[pick.to(cands.device)]]
    tau = torch.rand(n, 1, generator=generator).to(x.device)
    u = torch.rand(n, x.shape[1], generator=generator).to(x.device)
    return torch.where(u >= tau, x, other)


__all__ = ["PAPER_HIDDEN", "EmbeddingClassifier", "mix_same_class"]
