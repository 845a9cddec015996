"""A fixed per-dimension standardisation of embeddings, and its inverse.

The GMN's readout is a mean over ~10⁴ edges, and NeRFs of one shared init differ by small weight
changes, so every embedding shares one large mean: measured on the demo data, the spread of an
architecture's embeddings is 0.5–1.2 % of their norm. In that raw space cosine neighbours rank a
gallery mostly by its projection on the shared mean (the same order for every query), and a
GAN, a classifier or a CLIP map first has to learn the scale. ``pretrain-encoder`` therefore
ends by measuring the mean and standard deviation of every dimension over the training
embeddings (``EncoderConfig.embed_norm``) and stores them twice in the checkpoint: on the encoder
(``out_scale``: what ``embed`` writes is standardised) and on the decoder (``in_scale``: it
undoes the standardisation before decoding, so the decoder is exactly the one that was trained).
While training both are the identity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EmbeddingScale(nn.Module):
    """Shapes: forward (B, D) -> (B, D) = (x − mean) / std; inverse (B, D) -> (B, D)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def inverse(self, z: Tensor) -> Tensor:
        return z * self.std.to(z.dtype) + self.mean.to(z.dtype)

    @torch.no_grad()
    def set_from(self, x: Tensor, floor: float = 1e-6) -> None:
        """Statistics of the rows of ``x`` (n, D), n >= 2. A dimension that does not vary keeps a
        standard deviation of ``floor`` × the largest one (it then stays near 0, not infinite)."""
        if x.dim() != 2 or x.shape[0] < 2 or x.shape[1] != self.mean.numel():
            raise ValueError(f"need (n >= 2, {self.mean.numel()}) embeddings, got {tuple(x.shape)}")
        x = x.double()
        mean, std = x.mean(0), x.std(0)
        std = torch.clamp(std, min=max(float(std.max()) * floor, 1e-12))
        self.mean.copy_(mean.float())
        self.std.copy_(std.float())

    @torch.no_grad()
    def reset(self) -> None:
        self.mean.zero_()
        self.std.fill_(1.0)

    @property
    def is_identity(self) -> bool:
        return bool((self.mean == 0).all() and (self.std == 1).all())
