"""Losses of the learning stages; each takes its device and dtype from its inputs.

- :func:`rendering_loss`: seed 001 Eq. 3.3 / seed 000 Eq. 1–2, ``0.8·fg + 0.2·bg`` smooth-L1;
- :class:`SigLipLoss`: seed 000 Eq. 3 (Zhai et al.), learnable temperature and bias;
- :func:`cosine_loss`: ``1 − cos`` (clip2nerf);
- :func:`gradient_penalty`: WGAN-GP (Gulrajani et al.).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rendering_loss(
    fg_pred: Tensor,
    fg_target: Tensor,
    bg_pred: Tensor | None,
    bg_target: Tensor | None,
    fg_weight: float = 0.8,
    bg_weight: float = 0.2,
) -> Tensor:
    """``fg_weight·smoothL1(fg) + bg_weight·smoothL1(bg)``; any matching shapes (e.g. pixels
    (B, R, 3) of foreground rays and composited background points (B, P, 3))."""
    if fg_pred.shape != fg_target.shape:
        raise ValueError(f"fg shapes differ: {tuple(fg_pred.shape)} vs {tuple(fg_target.shape)}")
    loss = fg_weight * F.smooth_l1_loss(fg_pred, fg_target)
    if bg_pred is not None:
        if bg_target is None or bg_pred.shape != bg_target.shape:
            raise ValueError("bg prediction and target must both be given, with equal shapes")
        loss = loss + bg_weight * F.smooth_l1_loss(bg_pred, bg_target)
    return loss


def occupancy_loss(sigma: Tensor, occupied: Tensor, step: float) -> Tensor:
    """Binary cross-entropy between the opacity of one step, ``α = 1 − exp(−σ·step)``, and an
    occupancy target (nfkit's addition to the rendering loss; ``EncoderConfig.occ_weight`` says
    why). For an empty point it is the optical depth ``σ·step`` (linear in the density, so a faint
    fog is penalised as much as a dense one); for an occupied one ``−log α``, which stops pulling
    once the point is opaque. sigma, occupied: any equal shapes -> scalar."""
    if sigma.shape != occupied.shape:
        raise ValueError(f"shapes differ: {tuple(sigma.shape)} vs {tuple(occupied.shape)}")
    return opacity_cross_entropy(sigma, (occupied > 0.5).to(sigma.dtype), step)


def opacity_cross_entropy(sigma: Tensor, alpha_t: Tensor, step: float) -> Tensor:
    """Mean binary cross-entropy between the one-step opacity ``α = 1 − exp(−σ·step)`` and a
    target opacity ``alpha_t`` in [0, 1]: ``−α_t·log α + (1 − α_t)·σ·step`` (``−log(1 − α)`` is
    the optical depth itself). sigma, alpha_t: equal shapes -> scalar."""
    tau = sigma.clamp_min(0.0) * step
    log_alpha = torch.log(-torch.expm1(-tau.clamp_min(1e-10)))
    return (-(alpha_t * log_alpha) + (1.0 - alpha_t) * tau).mean()


def distillation_loss(sigma: Tensor, rgb: Tensor, alpha_t: Tensor, rgb_t: Tensor, step: float) -> Tensor:
    """Distilling a radiance field at points (the render decoder, ``nfkit/encoder/refit.py``):
    the binary cross-entropy between the student's one-step opacity ``α = 1 − exp(−σ·step)`` and
    the teacher's ``alpha_t``, plus the squared colour error weighted by ``alpha_t`` (colour only
    matters where the teacher is opaque). ``−log(1 − α)`` is the optical depth ``σ·step`` itself,
    so empty space costs its density linearly. sigma, alpha_t (..., N); rgb, rgb_t (..., N, 3)
    -> scalar."""
    if sigma.shape != alpha_t.shape or rgb.shape != rgb_t.shape or rgb.shape[:-1] != sigma.shape:
        raise ValueError(f"shapes differ: sigma {tuple(sigma.shape)}, alpha {tuple(alpha_t.shape)}, "
                         f"rgb {tuple(rgb.shape)}, target rgb {tuple(rgb_t.shape)}")
    density = opacity_cross_entropy(sigma, alpha_t, step)
    colour = (((rgb - rgb_t) ** 2).sum(dim=-1) * alpha_t).sum() / alpha_t.sum().clamp_min(1.0)
    return density + colour


class SigLipLoss(nn.Module):
    """Sigmoid contrastive loss between two aligned batches of embeddings.

    ``L = −(1/B) Σ_j Σ_k log σ(ℓ_jk (t·u_j·v_k + b))`` with ℓ = +1 on the diagonal (the same
    object) and −1 elsewhere; u, v L2-normalised; ``t = exp(log_t)``. Initial t = 10, b = −10
    (seed 000, as in SigLIP).

    Shapes: forward(u (B, D), v (B, D)) -> scalar
    """

    def __init__(self, init_t: float = 10.0, init_b: float = -10.0) -> None:
        super().__init__()
        self.log_t = nn.Parameter(torch.tensor(math.log(init_t)))
        self.bias = nn.Parameter(torch.tensor(float(init_b)))

    def logits(self, u: Tensor, v: Tensor) -> Tensor:
        u = F.normalize(u, dim=-1)
        v = F.normalize(v, dim=-1)
        return u @ v.T * self.log_t.exp() + self.bias

    def forward(self, u: Tensor, v: Tensor) -> Tensor:
        if u.dim() != 2 or u.shape != v.shape:
            raise ValueError(f"expected two (B, D) batches, got {tuple(u.shape)} and {tuple(v.shape)}")
        logits = self.logits(u, v)
        labels = 2.0 * torch.eye(u.shape[0], device=u.device, dtype=logits.dtype) - 1.0
        return -F.logsigmoid(labels * logits).sum() / u.shape[0]


def cosine_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean ``1 − cos(pred, target)`` over the batch. (B, D), (B, D) -> scalar"""
    return (1.0 - F.cosine_similarity(pred, target, dim=-1)).mean()


def gradient_penalty(critic, real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """WGAN-GP: ``E[(‖∇ critic(x̂)‖₂ − 1)²]`` on random interpolates x̂ of real and fake.

    Shapes: real, fake (B, D) -> scalar
    """
    eps = torch.rand(real.shape[0], 1, device=real.device, dtype=real.dtype, generator=generator)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    out = critic(mixed)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return ((grad.norm(2, dim=1) - 1.0) ** 2).mean()
