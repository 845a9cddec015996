"""Volume rendering: compositing of dense (..., n_rays, n_samples) samples.

Uses nerfacc's batched ``render_weight_from_density`` / ``accumulate_along_rays``, which are
plain torch for dense inputs and run on any device (SPEC §9); an identical torch version is
used when nerfacc cannot be imported.

    w_i = T_i (1 − exp(−σ_i δ_i)),   T_i = exp(−Σ_{j<i} σ_j δ_j)
    C = Σ w_i c_i + (1 − Σ w_i) · background
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

log = logging.getLogger(__name__)

try:  # nerfacc's dense path is pure torch; its CUDA extension is not needed here.
    from nerfacc.volrend import accumulate_along_rays as _nerfacc_accumulate
    from nerfacc.volrend import render_weight_from_density as _nerfacc_weights

    HAVE_NERFACC = True
except Exception:  # pragma: no cover - depends on the environment
    HAVE_NERFACC = False


def _weights_torch(t_starts: Tensor, t_ends: Tensor, sigmas: Tensor) -> Tensor:
    sigma_dt = sigmas * (t_ends - t_starts)
    alphas = 1.0 - torch.exp(-sigma_dt)
    excl = torch.cumsum(torch.cat([torch.zeros_like(sigma_dt[..., :1]), sigma_dt[..., :-1]], dim=-1), dim=-1)
    return torch.exp(-excl) * alphas


def render_weights(t_starts: Tensor, t_ends: Tensor, sigmas: Tensor, use_nerfacc: bool = True) -> Tensor:
    """Compositing weights from densities.

    Shapes:
        t_starts, t_ends, sigmas: (..., n_samples)
        returns weights: (..., n_samples)
    """
    if not (t_starts.shape == t_ends.shape == sigmas.shape):
        raise ValueError(
            f"t_starts, t_ends and sigmas must share a shape (..., n_samples), got "
            f"{tuple(t_starts.shape)}, {tuple(t_ends.shape)}, {tuple(sigmas.shape)}"
        )
    if use_nerfacc and HAVE_NERFACC:
        weights, _, _ = _nerfacc_weights(t_starts, t_ends, sigmas)
        return weights
    return _weights_torch(t_starts, t_ends, sigmas)


def composite(
    t_starts: Tensor,
    t_ends: Tensor,
    sigmas: Tensor,
    rgbs: Tensor,
    background: Tensor | None = None,
    use_nerfacc: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Colours, opacities and depths of rays from their samples.

    Shapes:
        t_starts, t_ends, sigmas: (..., n_samples)
        rgbs: (..., n_samples, 3)
        background: broadcastable to (..., 3), e.g. (3,) or (B, 1, 3); None = black
        returns rgb (..., 3), opacity (...,), depth (...,)
    """
    if rgbs.shape[:-1] != sigmas.shape or rgbs.shape[-1] != 3:
        raise ValueError(f"expected rgbs of shape {(*sigmas.shape, 3)}, got {tuple(rgbs.shape)}")
    weights = render_weights(t_starts, t_ends, sigmas, use_nerfacc)
    mids = 0.5 * (t_starts + t_ends)
    if use_nerfacc and HAVE_NERFACC:
        rgb = _nerfacc_accumulate(weights, rgbs)
        opacity = _nerfacc_accumulate(weights, None)[..., 0]
        depth = _nerfacc_accumulate(weights, mids[..., None])[..., 0]
    else:
        rgb = (weights[..., None] * rgbs).sum(dim=-2)
        opacity = weights.sum(dim=-1)
        depth = (weights * mids).sum(dim=-1)
    depth = depth / opacity.clamp_min(torch.finfo(depth.dtype).eps)
    if background is not None:
        rgb = rgb + background * (1.0 - opacity[..., None])
    return rgb, opacity, depth
