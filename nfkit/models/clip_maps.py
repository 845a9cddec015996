"""nerf2clip and clip2nerf: the MLPs between the NeRF embedding space and CLIP's (seed 002).

Both are ``Linear -> GELU`` per hidden layer and a final ``Linear`` (CVLAB-Unibo/clip2nerf):
nerf2clip 1024 -> 768 -> 512 and clip2nerf 512 -> 768 -> 1024 with the seeds' sizes; here the
ends are the embedding width of the encoder and of the CLIP model in use.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

PAPER_HIDDEN = (768,)


class MappingNet(nn.Module):
    """An MLP from one embedding space to another.

    Shapes:
        forward: (B, in_dim) -> (B, out_dim)
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = PAPER_HIDDEN) -> None:
        super().__init__()
        if in_dim < 1 or out_dim < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"widths must be >= 1, got in {in_dim}, hidden {list(hidden)}, out {out_dim}")
        self.in_dim, self.out_dim, self.hidden = int(in_dim), int(out_dim), tuple(int(h) for h in hidden)
        layers: list[nn.Module] = []
        width = in_dim
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.GELU()]
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"expected (B, {self.in_dim}), got {tuple(x.shape)}")
        return self.net(x)


def nerf2clip(embed_dim: int = 1024, clip_dim: int = 512, hidden: Sequence[int] = PAPER_HIDDEN) -> MappingNet:
    """NeRF embedding -> CLIP embedding (seed 002: 1024 -> 768 -> 512)."""
    return MappingNet(embed_dim, clip_dim, hidden)


def clip2nerf(clip_dim: int = 512, embed_dim: int = 1024, hidden: Sequence[int] = PAPER_HIDDEN) -> MappingNet:
    """CLIP embedding -> NeRF embedding (seed 002: 512 -> 768 -> 1024)."""
    return MappingNet(clip_dim, embed_dim, hidden)


@torch.no_grad()
def apply(net: MappingNet, x, batch_size: int = 4096) -> Tensor:
    """``net`` in eval mode over a big array, batched. Shapes: (N, in_dim) -> (N, out_dim) float32."""
    net.eval()
    p = next(net.parameters())
    x = torch.as_tensor(x, dtype=torch.float32)
    return torch.cat([net(x[a : a + batch_size].to(p.device)).cpu() for a in range(0, len(x), batch_size)]) if len(x) \
        else torch.zeros(0, net.out_dim)


__all__ = ["PAPER_HIDDEN", "MappingNet", "nerf2clip", "clip2nerf", "apply"]
