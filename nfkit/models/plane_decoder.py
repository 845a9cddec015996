"""The tri-plane render decoder: an embedding -> three feature planes -> (rgb, σ) at any point.

nfkit's addition, a second kind of render decoder (``EncoderConfig.refit_decoder = "planes"``,
fitted by ``nfkit/encoder/refit.py`` to the frozen encoder's embeddings). The implicit decoder of
the seeds (:class:`~nfkit.models.decoder.ImplicitDecoder`) conditions one MLP on the embedding
and evaluates all of it at every point: its whole width is shared between telling objects
apart and drawing them. Here the embedding is turned once per object into three axis-aligned
feature planes (the tri-plane of EG3D, Chan et al. 2022, as the tri-plane NeRFs of nfkit's
``tri`` family store their fields), and each point only reads the planes bilinearly and runs a
small MLP. Per point that costs about a tenth of the implicit decoder's FLOPs at the ``cpu``
preset, and a plane of R² texels per object draws a shape's parts where they are instead of
having to encode them in the weights of one network.

Layout:

- the code: the embedding's coordinates along the top ``whiten_dims`` principal components of
  the training embeddings, each of unit variance (``set_whitening``, as the implicit decoder's
  ``whiten_dims``);
- the generator: ``Linear(code → hidden)`` + ReLU, ``Linear(hidden → hidden)`` + ReLU,
  ``Linear(hidden → 3·C·R²)``, read as planes xy, xz, yz of C channels and R×R texels over the
  object box (its bias is the planes shared by every object);
- per point: the three planes sampled bilinearly at the point's projections (``grid_sample``,
  texel centres at ``(i + ½)/R``, border values beyond), concatenated (3·C) with a frequency
  encoding of the position (``freq_bands``), then ``Linear → ReLU → Linear → ReLU → Linear(4)``
  of ``mlp_hidden`` units; rgb through a sigmoid, σ through ``trunc_exp(raw − 1)``, zero outside
  the box (the convention of :class:`~nfkit.models.decoder.ImplicitDecoder` and of the NeRFs).

Shapes: forward(embedding (B, D), x (B, N, 3)) -> rgb (B, N, 3), sigma (B, N).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfkit.models.decoder import RadianceOutputs, WhitenedCode
from nfkit.nerf.encodings import frequency_encoding
from nfkit.nerf.field import normalize

# the plane pairs: plane p reads coordinates PLANE_AXES[p] of the normalised position
PLANE_AXES = ((0, 1), (0, 2), (1, 2))


@dataclass(frozen=True)
class PlaneDecoderSpec:
    embed_dim: int = 1024
    whiten_dims: int = 32
    hidden: int = 128
    channels: int = 8
    resolution: int = 32
    mlp_hidden: int = 64
    freq_bands: int = 4

    def __post_init__(self) -> None:
        if min(self.embed_dim, self.whiten_dims, self.hidden, self.channels, self.mlp_hidden) < 1 \
                or self.resolution < 2 or self.freq_bands < 0:
            raise ValueError(f"plane decoder sizes must be positive (resolution >= 2), got {self}")
        if self.whiten_dims > self.embed_dim:
            raise ValueError(f"whiten_dims ({self.whiten_dims}) cannot exceed embed_dim ({self.embed_dim})")

    @property
    def plane_numel(self) -> int:
        """Values of one object's three planes."""
        return 3 * self.channels * self.resolution**2


class PlaneDecoder(RadianceOutputs, WhitenedCode, nn.Module):
    """Shapes: forward(embedding (B, D), x (B, N, 3)) -> rgb (B, N, 3), sigma (B, N)."""

    def __init__(self, spec: PlaneDecoderSpec = PlaneDecoderSpec()) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("whiten_mean", torch.zeros(spec.embed_dim))
        self.register_buffer("whiten_matrix", torch.eye(spec.embed_dim, spec.whiten_dims))
        h = spec.hidden
        self.g1 = nn.Linear(spec.whiten_dims, h)
        self.g2 = nn.Linear(h, h)
        self.g3 = nn.Linear(h, spec.plane_numel)
        with torch.no_grad():  # planes of order 0.1 at the start: the point MLP sees them from step 0
            self.g3.weight.mul_(0.1)
            self.g3.bias.uniform_(-0.1, 0.1)
        m = spec.mlp_hidden
        self.p1 = nn.Linear(3 * spec.channels + 6 * spec.freq_bands, m)
        self.p2 = nn.Linear(m, m)
        self.out = nn.Linear(m, 4)

    def planes(self, embedding: Tensor) -> Tensor:
        """The three feature planes of each embedding. (B, D) -> (B, 3, C, R, R); plane p's
        texel [i, j] sits at (axis a = (j + ½)/R, axis b = (i + ½)/R), (a, b) = PLANE_AXES[p]."""
        if embedding.dim() != 2 or embedding.shape[1] != self.spec.embed_dim:
            raise ValueError(f"expected embeddings of shape (B, {self.spec.embed_dim}), got {tuple(embedding.shape)}")
        s = self.spec
        z = self.code(embedding)
        h = torch.relu(self.g2(torch.relu(self.g1(z))))
        return self.g3(h).view(-1, 3, s.channels, s.resolution, s.resolution)

    def raw(self, embedding: Tensor, x: Tensor) -> Tensor:
        """The 4 raw outputs. (B, D), (B, N, 3) -> (B, N, 4)"""
        if x.dim() != 3 or x.shape[0] != embedding.shape[0] or x.shape[-1] != 3:
            raise ValueError(f"expected positions of shape ({embedding.shape[0]}, N, 3), got {tuple(x.shape)}")
        s = self.spec
        planes = self.planes(embedding)
        u = normalize(x)
        g = (2.0 * u - 1.0).to(planes.dtype)  # grid_sample's [-1, 1]; x of the grid = last axis
        feats = []
        for p, (a, b) in enumerate(PLANE_AXES):
            uv = torch.stack([g[..., a], g[..., b]], dim=-1)[:, :, None, :]  # (B, N, 1, 2)
            f = F.grid_sample(planes[:, p], uv, mode="bilinear", padding_mode="border", align_corners=False)
            feats.append(f[..., 0].transpose(1, 2))  # (B, N, C)
        enc = frequency_encoding(u, s.freq_bands).to(planes.dtype)
        h = torch.cat([*feats, enc], dim=-1)
        h = torch.relu(self.p1(h))
        h = torch.relu(self.p2(h))
        return self.out(h)


def plane_decoder_flops(spec: PlaneDecoderSpec, n_points: int, n_objects: int = 1) -> float:
    """FLOPs (2 per multiply-add) of the matrix products for ``n_points`` points of
    ``n_objects`` objects (the generator runs once per object)."""
    m, e = spec.mlp_hidden, 3 * spec.channels + 6 * spec.freq_bands
    per_obj = spec.whiten_dims * spec.hidden + spec.hidden**2 + spec.hidden * spec.plane_numel
    return 2.0 * (n_objects * per_obj + n_points * (e * m + m * m + 4 * m))
