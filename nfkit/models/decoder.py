"""The implicit decoder: embedding + position -> (rgb, σ), a radiance field of B objects.

Seed 000 Appendix B (and nf2vec, seed 003 §III): the input is [embedding ‖ frequency encoding of
the position] (positions normalised to [0, 1] over the object box), 4 hidden layers of
``hidden`` units with ReLU, a skip projection ``ReLU(Linear(input → hidden))`` added to the
output of the 2nd hidden layer, and a linear output (r, g, b, σ): rgb through a sigmoid, σ
through ``trunc_exp(raw − 1)`` and zero outside the box (the convention of the NeRFs
themselves, ``nfkit.nerf.field``).

``normalize_embedding`` (nfkit's addition, off in the reference recipe) standardises the
embedding per dimension (a BatchNorm without affine parameters) before the decoder's first
layer. The GMN's embedding is a mean over ~10⁴ edges and NeRFs of one shared init differ by
small weight changes, so at the start of training every NeRF of an architecture gets almost the
same embedding (measured: spread 0.6 % of its norm); the decoder then learns the mean object and
ignores the embedding for many epochs. Standardised, the differences between objects are of
order one from the first step. The embedding itself (what ``embed`` writes) is unchanged.

``whiten_dims`` (nfkit's addition, used by the decoder that ``pretrain-encoder`` refits on the
frozen embeddings, ``nfkit/encoder/refit.py``): the decoder reads the embedding's coordinates
along the top ``whiten_dims`` principal components of the training embeddings, each scaled to
unit variance (``set_whitening``). The trained encoder's embeddings vary mostly between
architectures (measured on the demo: the spread within one architecture is 2–5 % of the total),
so a per-dimension standardisation leaves the differences between objects small; whitened, the
few directions that tell objects apart are of order one.

Frequencies: 24 (the paper and nf2vec: 1024 + 144 = 1168 inputs). The gmnerf code uses 48
(1312 inputs); nfkit follows the paper, whose table is the one the numbers were measured with,
and 24 bands already resolve 2⁻²⁴ of the box, far below any detail a decoder of this size
reproduces.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nfkit.nerf.encodings import frequency_encoding
from nfkit.nerf.field import normalize, trunc_exp


@dataclass(frozen=True)
class DecoderSpec:
    embed_dim: int = 1024
    hidden: int = 1024
    freq_bands: int = 24
    normalize_embedding: bool = False
    whiten_dims: int = 0

    def __post_init__(self) -> None:
        if self.embed_dim < 1 or self.hidden < 1 or self.freq_bands < 0 or self.whiten_dims < 0:
            raise ValueError(f"decoder sizes must be positive, got {self}")
        if self.whiten_dims > self.embed_dim:
            raise ValueError(f"whiten_dims ({self.whiten_dims}) cannot exceed embed_dim ({self.embed_dim})")

    @property
    def code_dim(self) -> int:
        """Width of what the first layer reads of the embedding."""
        return self.whiten_dims or self.embed_dim

    @property
    def input_dim(self) -> int:
        return self.code_dim + 6 * self.freq_bands


class RadianceOutputs:
    """The outputs of a decoder from its 4 raw ones (``self.raw(embedding, x)``): rgb through a
    sigmoid, σ through ``trunc_exp(raw − 1)`` and zero outside the box."""

    def forward(self, embedding: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.raw(embedding, x)
        rgb = torch.sigmoid(out[..., :3])
        u = normalize(x)
        inside = ((u > 0.0) & (u < 1.0)).all(dim=-1).to(out.dtype)
        sigma = trunc_exp(out[..., 3] - 1.0) * inside
        return rgb, sigma

    def field(self, embedding: Tensor) -> DecodedField:
        """The decoder conditioned on B embeddings, as a radiance field of B objects
        (``nfkit.nerf.radiance.RadianceField``: renderers and grid builders take it)."""
        return DecodedField(self, embedding)


class WhitenedCode:
    """What a decoder reads of the embedding when it is whitened (``spec.whiten_dims``): its
    coordinates along the top principal components of the training embeddings, each scaled to
    unit variance. The module keeps the buffers ``whiten_mean`` (D,) and ``whiten_matrix``
    (D, whiten_dims)."""

    def code(self, embedding: Tensor) -> Tensor:
        """(B, D) -> (B, whiten_dims)"""
        return (embedding - self.whiten_mean) @ self.whiten_matrix

    @torch.no_grad()
    def set_whitening(self, embeddings: Tensor, eps: float = 1e-6) -> None:
        """Set the whitening (``whiten_dims``) from embeddings (M, D), M >= 2: their mean and
        their top principal directions, each divided by its standard deviation. Components
        beyond the rank of ``embeddings`` read zero."""
        if not self.spec.whiten_dims:
            raise ValueError("this decoder reads the raw embedding (whiten_dims = 0)")
        x = embeddings.detach().to(self.whiten_mean.device, torch.float64)
        if x.dim() != 2 or x.shape[1] != self.spec.embed_dim or x.shape[0] < 2:
            raise ValueError(f"expected (M >= 2, {self.spec.embed_dim}) embeddings, got {tuple(x.shape)}")
        mean = x.mean(dim=0)
        _, s, vt = torch.linalg.svd(x - mean, full_matrices=False)
        # a sign convention (LAPACK's is not fixed): each direction's largest entry is positive
        pivot = vt.abs().argmax(dim=1)
        vt = vt * torch.sign(vt.gather(1, pivot[:, None]))
        k = self.spec.whiten_dims
        std = s / math.sqrt(x.shape[0] - 1)
        keep = min(k, int((std > eps * max(float(std[0]), eps)).sum()))
        matrix = torch.zeros(self.spec.embed_dim, k, dtype=torch.float64, device=x.device)
        matrix[:, :keep] = vt[:keep].T / std[:keep]
        self.whiten_mean.copy_(mean.to(self.whiten_mean.dtype))
        self.whiten_matrix.copy_(matrix.to(self.whiten_matrix.dtype))


class ImplicitDecoder(RadianceOutputs, WhitenedCode, nn.Module):
    """Shapes: forward(embedding (B, D), x (B, N, 3)) -> rgb (B, N, 3), sigma (B, N)."""

    def __init__(self, spec: DecoderSpec = DecoderSpec()) -> None:
        super().__init__()
        self.spec = spec
        d, h = spec.input_dim, spec.hidden
        # Standardises each embedding dimension over the batch (running statistics when
        # decoding in eval mode): see the module docstring.
        self.embed_norm = nn.BatchNorm1d(spec.embed_dim, affine=False) if spec.normalize_embedding else None
        self._batch_stats: _BatchStats | None = None  # set by batch_stats_from
        if spec.whiten_dims:  # the identity on the first whiten_dims coordinates until set
            self.register_buffer("whiten_mean", torch.zeros(spec.embed_dim))
            self.register_buffer("whiten_matrix", torch.eye(spec.embed_dim, spec.whiten_dims))
        self.l1 = nn.Linear(d, h)
        self.l2 = nn.Linear(h, h)
        self.skip = nn.Linear(d, h)
        self.l3 = nn.Linear(h, h)
        self.l4 = nn.Linear(h, h)
        self.out = nn.Linear(h, 4)

    def raw(self, embedding: Tensor, x: Tensor) -> Tensor:
        """The 4 raw outputs. (B, D), (B, N, 3) -> (B, N, 4)"""
        if embedding.dim() != 2 or embedding.shape[1] != self.spec.embed_dim:
            raise ValueError(
                f"expected embeddings of shape (B, {self.spec.embed_dim}), got {tuple(embedding.shape)}"
            )
        if x.dim() != 3 or x.shape[0] != embedding.shape[0] or x.shape[-1] != 3:
            raise ValueError(f"expected positions of shape ({embedding.shape[0]}, N, 3), got {tuple(x.shape)}")
        in_scale = getattr(self, "in_scale", None)  # set by EncoderModel with embed_norm
        if in_scale is not None:
            embedding = in_scale.inverse(embedding)
        if self.embed_norm is not None and self._batch_stats is not None:
            embedding = self._batch_stats(embedding)
        elif self.embed_norm is not None:
            if self.training and embedding.shape[0] == 1:
                raise ValueError("a normalised decoder trains on batches of 2 or more embeddings")
            embedding = self.embed_norm(embedding)
        if self.spec.whiten_dims:
            embedding = self.code(embedding)
        u = normalize(x)
        enc = frequency_encoding(u, self.spec.freq_bands).to(embedding.dtype)
        # [embedding ‖ enc] without repeating the embedding N times: split the first products
        d = self.spec.code_dim
        first = torch.cat([self.l1.weight, self.skip.weight], dim=0)  # (2h, d + e)
        per_obj = embedding @ first[:, :d].T  # (B, 2h)
        per_pt = enc @ first[:, d:].T  # (B, N, 2h)
        h1, hs = (per_pt + per_obj[:, None, :]).split(self.spec.hidden, dim=-1)
        h = torch.relu(h1 + self.l1.bias)
        h = torch.relu(self.l2(h)) + torch.relu(hs + self.skip.bias)
        h = torch.relu(self.l3(h))
        h = torch.relu(self.l4(h))
        return self.out(h)

    @contextlib.contextmanager
    def batch_stats_from(self, embedding: Tensor) -> Iterator[None]:
        """While active, the embedding normalisation (``normalize_embedding``) uses the batch
        statistics of ``embedding`` (B', D), whatever batch a call sees: data-parallel training
        passes the whole step's batch gathered from every rank, so each rank decodes its part as
        if the batch were one (a synchronised BatchNorm, gradients included). The running
        statistics are updated per call, as a BatchNorm does. Nothing changes without
        ``normalize_embedding``."""
        if self.embed_norm is None:
            yield
            return
        in_scale = getattr(self, "in_scale", None)
        full = in_scale.inverse(embedding) if in_scale is not None else embedding
        self._batch_stats = _BatchStats(self.embed_norm, full)
        try:
            yield
        finally:
            self._batch_stats = None

class _BatchStats:
    """``bn`` (a BatchNorm1d) with the statistics of a given batch instead of its input's."""

    def __init__(self, bn: nn.BatchNorm1d, full: Tensor) -> None:
        if full.shape[0] < 2:
            raise ValueError("a normalised decoder trains on batches of 2 or more embeddings")
        self.bn, self.n = bn, int(full.shape[0])
        self.mean = full.mean(dim=0)
        self.var = full.var(dim=0, unbiased=False)

    def __call__(self, x: Tensor) -> Tensor:
        bn = self.bn
        if not bn.training:
            return bn(x)
        if bn.track_running_stats and bn.running_mean is not None:
            with torch.no_grad():
                bn.num_batches_tracked += 1
                m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                bn.running_mean.mul_(1.0 - m).add_(self.mean.detach().to(bn.running_mean.dtype), alpha=m)
                unbiased = self.var.detach() * (self.n / (self.n - 1))
                bn.running_var.mul_(1.0 - m).add_(unbiased.to(bn.running_var.dtype), alpha=m)
        y = (x - self.mean) * torch.rsqrt(self.var + bn.eps)
        if bn.affine:
            y = y * bn.weight + bn.bias
        return y


class DecodedField:
    """B decoded embeddings as a :class:`~nfkit.nerf.radiance.RadianceField`.

    Shapes: embedding (B, D); ``field(x)``: (B, N, 3) -> rgb (B, N, 3), sigma (B, N)
    """

    def __init__(self, decoder: ImplicitDecoder, embedding: Tensor) -> None:
        self.decoder, self.embedding = decoder, embedding

    @property
    def n_fields(self) -> int:
        return int(self.embedding.shape[0])

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.decoder(self.embedding, x)

    def density(self, x: Tensor) -> Tensor:
        return self.decoder(self.embedding, x)[1]

    def density_one(self, b: int, x: Tensor) -> Tensor:
        return self.decoder(self.embedding[b : b + 1], x[None])[1][0]


def decoder_flops(spec: DecoderSpec, n_points: int) -> float:
    """FLOPs (2 per multiply-add) of the decoder's matrix products for ``n_points`` points."""
    e, h = 6 * spec.freq_bands, spec.hidden
    return 2.0 * n_points * (2 * e * h + 3 * h * h + 4 * h)
