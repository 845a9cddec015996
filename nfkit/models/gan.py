"""The latent GAN of Achlioptas et al. as nf2vec trained it on NeRF embeddings.

Reference: CVLAB-Unibo/nf2vec ``task_generation/`` (TF1, after ``latent_3d_points``), SPEC §10:

- generator: z ~ N(0, 0.2²) of width 128 → FC 128 + ReLU → FC ``dim`` → ReLU (GMN and nf2vec
  embeddings are non-negative, so is the generator's output). ``output="linear"`` drops the last
  ReLU, for embeddings that take negative values (nfkit's standardised ones, ``embed_norm``): a
  ReLU generator cannot reach half of that space;
- critic: FC 256 + ReLU → FC 512 + ReLU → FC 1 (a Wasserstein critic: no sigmoid).

Both are pure modules; the training loop (WGAN-GP) is :mod:`nfkit.generate.gan`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: width of the generator's noise and its hidden layer (reference: 128 and 128)
NOISE_DIM = 128
#: standard deviation of the generator's Gaussian noise (reference: 0.2)
NOISE_STD = 0.2
#: the generator's last activation: the reference's ReLU, or none
GENERATOR_OUTPUTS = ("relu", "linear")


class LatentGenerator(nn.Module):
    """Noise → embedding.

    Shapes: forward(z (B, noise_dim)) -> (B, dim), non-negative for ``output="relu"``.
    """

    def __init__(self, dim: int, noise_dim: int = NOISE_DIM, hidden: int = 128, output: str = "relu") -> None:
        super().__init__()
        if min(dim, noise_dim, hidden) < 1:
            raise ValueError(f"generator sizes must be positive, got dim={dim}, noise={noise_dim}, hidden={hidden}")
        if output not in GENERATOR_OUTPUTS:
            raise ValueError(f"generator output must be one of {GENERATOR_OUTPUTS}, got {output!r}")
        self.dim, self.noise_dim, self.hidden, self.output = dim, noise_dim, hidden, output
        last = [nn.ReLU()] if output == "relu" else []
        self.net = nn.Sequential(nn.Linear(noise_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim), *last)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.noise_dim:
            raise ValueError(f"expected noise of shape (B, {self.noise_dim}), got {tuple(z.shape)}")
        return self.net(z)

    def noise(self, n: int, generator: torch.Generator | None = None, std: float = NOISE_STD) -> Tensor:
        """``n`` noise vectors N(0, std²) on the module's device. -> (n, noise_dim)"""
        dev = next(self.parameters()).device
        return torch.randn(n, self.noise_dim, generator=generator, device=dev) * std


class LatentCritic(nn.Module):
    """Embedding → Wasserstein critic score.

    Shapes: forward(x (B, dim)) -> (B, 1).
    """

    def __init__(self, dim: int, hidden: tuple[int, int] = (256, 512)) -> None:
        super().__init__()
        if dim < 1 or min(hidden) < 1:
            raise ValueError(f"critic sizes must be positive, got dim={dim}, hidden={hidden}")
        self.dim, self.hidden = dim, tuple(hidden)
        self.net = nn.Sequential(
            nn.Linear(dim, hidden[0]), nn.ReLU(), nn.Linear(hidden[0], hidden[1]), nn.ReLU(), nn.Linear(hidden[1], 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of shape (B, {self.dim}), got {tuple(x.shape)}")
        return self.net(x)


__all__ = ["NOISE_DIM", "NOISE_STD", "GENERATOR_OUTPUTS", "LatentGenerator", "LatentCritic"]
