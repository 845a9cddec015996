"""Ray helpers beyond camera rays: box intersection, stratified samples, turntable cameras.

Camera rays of a dataset come from :func:`nfkit.data.cameras.camera_rays`; the functions here
take rays of any leading shape ``(...)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from nfkit.errors import UserError

#: Object box of every NeRF, as the reference code sets nerfacc's AABB (SPEC §2).
DEFAULT_AABB: tuple[float, float] = (-0.7, 0.7)


def _check_rays(origins: Tensor, dirs: Tensor) -> None:
    if origins.shape != dirs.shape or origins.shape[-1] != 3:
        raise ValueError(
            f"expected origins and directions of the same shape (..., 3), "
            f"got {tuple(origins.shape)} and {tuple(dirs.shape)}"
        )


def ray_aabb_intersect(
    origins: Tensor, dirs: Tensor, aabb: tuple[float, float] = DEFAULT_AABB
) -> tuple[Tensor, Tensor, Tensor]:
    """Where rays enter and leave the cube ``[lo, hi]^3`` (slab method).

    Shapes:
        origins, dirs: (..., 3)
        returns t_near, t_far: (...,) clamped to t >= 0; hit: (...,) bool. Rays that miss
        the box get t_near = t_far = 0.
    """
    _check_rays(origins, dirs)
    lo, hi = aabb
    safe = torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    inv = 1.0 / safe
    t0 = (lo - origins) * inv
    t1 = (hi - origins) * inv
    t_near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(0.0)
    t_far = torch.maximum(t0, t1).amin(dim=-1)
    hit = t_far > t_near
    zero = torch.zeros_like(t_near)
    return torch.where(hit, t_near, zero), torch.where(hit, t_far, zero), hit


def stratified_intervals(
    t_near: Tensor,
    t_far: Tensor,
    n_samples: int,
    stratified: bool,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """``n_samples`` equal intervals per ray tiling (t_near, t_far).

    With ``stratified`` the whole comb is shifted by a random fraction of one interval per
    ray (as nerfacc shifts the near plane); the midpoints stay inside (t_near, t_far).

    Shapes:
        t_near, t_far: (...,)
        returns t_starts, t_ends: (..., n_samples)
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    delta = (t_far - t_near) / n_samples
    steps = torch.arange(n_samples, device=t_near.device, dtype=t_near.dtype)
    if stratified:
        shift = torch.rand(
            (*t_near.shape, 1), generator=generator, device=t_near.device, dtype=t_near.dtype
        )
    else:
        shift = torch.full((*t_near.shape, 1), 0.5, device=t_near.device, dtype=t_near.dtype)
    mids = t_near[..., None] + (steps + shift) * delta[..., None]
    half = 0.5 * delta[..., None]
    return mids - half, mids + half


def turntable_cameras(
    n_views: int,
    elevation_deg: float = 30.0,
    distance: float = 2.0,
) -> Tensor:
    """``n_views`` cameras on a circle around the vertical (y) axis, looking at the origin.

    Uses the dataset's conventions (:mod:`nfkit.data.cameras`: y-up world, OpenGL axes).

    Shapes:
        returns c2w: (n_views, 4, 4) float32
    """
    from nfkit.data.cameras import look_at, orbit_eyes

    if n_views < 1:
        raise UserError(f"a turntable needs at least one view, got {n_views}")
    az = np.arange(n_views) * (2 * math.pi / n_views)
    el = np.full(n_views, math.radians(elevation_deg))
    eyes = orbit_eyes(az, el, np.full(n_views, float(distance)))
    return torch.from_numpy(look_at(eyes)).float()
