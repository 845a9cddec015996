"""Rendering B NeRFs at once: box intersection, occupancy skipping, field, compositing.

:func:`render_batch` is the one code path used by the fitter (with gradients, stratified
samples, a random background) and by every renderer (``nfkit render``, later the decoder
stages, through :func:`render_rays`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from nfkit.render.occupancy import OccupancyGrid, gather_occupied, scatter_samples, take
from nfkit.render.rays import DEFAULT_AABB, ray_aabb_intersect, stratified_intervals
from nfkit.render.volrend import composite

FieldFn = Callable[[Tensor], tuple[Tensor, Tensor]]
"""(B, N, 3) world positions -> (rgb (B, N, 3), sigma (B, N))."""


@dataclass
class RenderOutput:
    """Shapes: rgb (B, R, 3), opacity (B, R), depth (B, R); n_evaluated (B,) samples the
    field was evaluated on per NeRF (occupied samples only), n_samples_total samples per NeRF
    before skipping."""

    rgb: Tensor
    opacity: Tensor
    depth: Tensor
    n_evaluated: Tensor
    n_samples_total: int


def render_batch(
    field_fn: FieldFn,
    origins: Tensor,
    dirs: Tensor,
    n_samples: int,
    grid: OccupancyGrid | None = None,
    background: Tensor | None = None,
    stratified: bool = False,
    generator: torch.Generator | None = None,
    aabb: tuple[float, float] = DEFAULT_AABB,
    early_stop_eps: float = 0.0,
) -> RenderOutput:
    """Render rays of B NeRFs; the field only sees samples inside the box and in occupied cells.

    ``early_stop_eps > 0``: a ray stops once its transmittance is below it (nerfacc's early
    stopping). The occupied samples of each ray are evaluated front to back in groups
    (:data:`EARLY_STOP_GROUPS`, by their rank along the ray), and a group is evaluated only for
    the rays whose transmittance before it is at least ``early_stop_eps``: behind an opaque
    surface the field is not evaluated. The colour of a ray changes by less than
    ``early_stop_eps`` (what the skipped samples could add); the gradients of the evaluated
    samples are those of the full render up to that.

    Shapes:
        origins, dirs: (B, R, 3), directions of unit length
        background: (B, 3) or (3,) or None (black)
    """
    if origins.dim() != 3 or origins.shape != dirs.shape or origins.shape[-1] != 3:
        raise ValueError(
            f"expected origins and dirs of shape (B, R, 3), got {tuple(origins.shape)}, {tuple(dirs.shape)}"
        )
    b, r, _ = origins.shape
    t_near, t_far, hit = ray_aabb_intersect(origins, dirs, aabb)
    t_starts, t_ends = stratified_intervals(t_near, t_far, n_samples, stratified, generator)
    mids = 0.5 * (t_starts + t_ends)
    positions = (origins[:, :, None, :] + dirs[:, :, None, :] * mids[..., None]).reshape(b, r * n_samples, 3)
    mask = hit[:, :, None].expand(b, r, n_samples).reshape(b, r * n_samples)
    if grid is not None:
        mask = mask & grid.lookup(positions)
    if early_stop_eps > 0 and bool(mask.any()):
        sigmas, rgbs, n_evaluated = _march_groups(field_fn, positions, mask.reshape(b, r, n_samples),
                                                  t_ends - t_starts, early_stop_eps)
    else:
        rgb_s, sigma_s, index, valid = _evaluate(field_fn, positions, mask)
        sigmas = scatter_samples(sigma_s, index, valid, r * n_samples).reshape(b, r, n_samples)
        rgbs = scatter_samples(rgb_s, index, valid, r * n_samples).reshape(b, r, n_samples, 3)
        n_evaluated = valid.sum(dim=1)
    if background is not None and background.dim() == 2:
        background = background[:, None, :]
    rgb, opacity, depth = composite(t_starts, t_ends, sigmas, rgbs, background)
    return RenderOutput(rgb, opacity, depth, n_evaluated, r * n_samples)


EARLY_STOP_GROUPS: tuple[int, ...] = (0, 8, 16, 32, 64, 128)
"""Ranks (along the ray, among its occupied samples) where the groups of :func:`render_batch`'s
early stopping start; after the last, groups of twice the previous width. Narrow groups first,
where most rays meet the surface; each group is one field call."""


def _evaluate(field_fn: FieldFn, positions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The field at the True entries of ``mask`` (B, M) of ``positions`` (B, M, 3), packed per
    NeRF: (rgb (B, K, 3), sigma (B, K), index (B, K), valid (B, K))."""
    index, valid = gather_occupied(mask)
    pts = take(positions, index)
    pts = torch.where(valid[..., None], pts, torch.zeros_like(pts))  # padding at the box centre
    if hasattr(field_fn, "forward_ragged"):  # skip the padding when the NeRFs' counts differ a lot
        rgb_s, sigma_s = field_fn.forward_ragged(pts, valid.sum(dim=1))
    else:
        rgb_s, sigma_s = field_fn(pts)
    return rgb_s, sigma_s, index, valid


def _group_bounds(n: int) -> list[tuple[int, int]]:
    """[start, stop) ranks of the early-stopping groups covering ranks 0..n-1."""
    starts = [g for g in EARLY_STOP_GROUPS if g < n]
    width = max(EARLY_STOP_GROUPS[-1] - EARLY_STOP_GROUPS[-2], 1)
    while starts[-1] + width < n:
        starts.append(starts[-1] + width)
        width *= 2
    return list(zip(starts, [*starts[1:], n], strict=True))


def _march_groups(field_fn: FieldFn, positions: Tensor, mask: Tensor, deltas: Tensor, eps: float):
    """:func:`render_batch`'s early stopping: dense sigmas (B, R, S) and rgbs (B, R, S, 3) with
    zeros where nothing was evaluated, and the number of evaluated samples per NeRF (B,)."""
    b, r, s = mask.shape
    # the occupied samples of each NeRF, packed once in ray order (front to back on each ray)
    index, valid = gather_occupied(mask.reshape(b, r * s))
    rank = (torch.cumsum(mask, dim=-1, dtype=torch.int32) - 1).reshape(b, r * s).gather(1, index)
    ray = torch.div(index, s, rounding_mode="floor")
    delta = deltas.reshape(b, r * s).gather(1, index)
    pts = take(positions, index)
    longest = int(rank[valid].max()) + 1  # the caller passes at least one occupied sample
    max_depth = -math.log(eps)  # transmittance exp(-depth) >= eps
    depth = torch.zeros(b, r, dtype=deltas.dtype, device=deltas.device)
    k = index.shape[1]
    sigma_p = rgb_p = None
    n_evaluated = torch.zeros(b, dtype=torch.long, device=mask.device)
    for lo, hi in _group_bounds(longest):
        sel = valid & (rank >= lo) & (rank < hi) & (depth.gather(1, ray) <= max_depth)
        if not bool(sel.any()):
            break  # ranks are contiguous per ray: later groups hold no sample of a live ray either
        rgb_s, sigma_s, sub, ok = _evaluate(field_fn, pts, sel)
        sig = scatter_samples(sigma_s, sub, ok, k)  # (B, K), the packed layout; groups are disjoint
        col = scatter_samples(rgb_s, sub, ok, k)
        sigma_p = sig if sigma_p is None else sigma_p + sig
        rgb_p = col if rgb_p is None else rgb_p + col
        n_evaluated += ok.sum(dim=1)
        with torch.no_grad():
            depth = depth.scatter_add(1, ray, sig.detach() * delta)
    sigmas = scatter_samples(sigma_p, index, valid, r * s).reshape(b, r, s)
    rgbs = scatter_samples(rgb_p, index, valid, r * s).reshape(b, r, s, 3)
    return sigmas, rgbs, n_evaluated


def field_fn_for(spec, params: Mapping[str, Tensor], sin: str = "exact") -> FieldFn:
    """The torch field of ``spec`` with batched parameters (leading NeRF dimension), as a
    :class:`~nfkit.nerf.radiance.RadianceField` (callable: positions -> (rgb, sigma))."""
    from nfkit.nerf.radiance import ParamField

    return ParamField(spec, params, sin=sin)


def density_fn_for(spec, params: Mapping[str, Tensor], sin: str = "exact") -> Callable[[Tensor], Tensor]:
    return field_fn_for(spec, params, sin=sin).density


@torch.no_grad()
def grid_from_field(
    field,
    resolution: int,
    step_size: float,
    occ_thre: float = 0.01,
    aabb: tuple[float, float] = DEFAULT_AABB,
    generator: torch.Generator | None = None,
    passes: int = 2,
) -> OccupancyGrid:
    """The occupancy grid of a :class:`~nfkit.nerf.radiance.RadianceField` from its density
    (``occ = density · step_size`` at jittered points of every cell, ``passes`` sweeps): the one
    way renderers and evaluations rebuild a grid (shards do not store grids)."""
    device = getattr(field, "device", None)
    if device is None:
        device = next(iter(field.params.values())).device if hasattr(field, "params") else "cpu"
    return OccupancyGrid.from_density(
        lambda x: field.density(x) * step_size, field.n_fields, resolution, aabb, occ_thre,
        passes=passes, device=device, generator=generator,
    )


@torch.no_grad()
def build_grid(
    spec,
    params: Mapping[str, Tensor],
    resolution: int,
    step_size: float,
    occ_thre: float = 0.01,
    aabb: tuple[float, float] = DEFAULT_AABB,
    generator: torch.Generator | None = None,
    sin: str = "exact",
) -> OccupancyGrid:
    """An occupancy grid for fitted NeRFs (batched params), from their density."""
    return grid_from_field(field_fn_for(spec, params, sin), resolution, step_size, occ_thre, aabb, generator)


def default_step_size(n_samples: int, aabb: tuple[float, float] = DEFAULT_AABB) -> float:
    """Nominal step: the box diagonal over ``n_samples`` (nerfacc's render_step_size convention)."""
    return (aabb[1] - aabb[0]) * 3**0.5 / n_samples


@torch.no_grad()
def render_rays(
    spec,
    params: Mapping[str, Tensor],
    origins: Tensor,
    dirs: Tensor,
    n_samples: int = 128,
    grid: OccupancyGrid | None | str = "auto",
    grid_resolution: int = 64,
    background: Tensor | None = None,
    chunk: int = 8192,
    aabb: tuple[float, float] = DEFAULT_AABB,
    sin: str = "exact",
) -> RenderOutput:
    """Render any number of rays of B NeRFs given by their canonical parameters.

    ``grid="auto"`` builds an occupancy grid from the field's density first (the same rule as
    during fitting); ``None`` evaluates every sample in the box. ``sin`` is the sine the
    NeRFs' weights were trained with (``NerfRecord.sin``: ``exact`` or ``tcnn``).

    Shapes:
        params: name -> (B, *shape) tensors on the rays' device
        origins, dirs: (B, R, 3)
        returns rgb (B, R, 3), opacity (B, R), depth (B, R)
    """
    if isinstance(grid, str):
        if grid != "auto":
            raise ValueError(f"grid must be an OccupancyGrid, None or 'auto', got {grid!r}")
        grid = build_grid(spec, params, grid_resolution, default_step_size(n_samples, aabb), aabb=aabb, sin=sin)
    fn = field_fn_for(spec, params, sin)
    outs = []
    for start in range(0, origins.shape[1], chunk):
        outs.append(
            render_batch(
                fn,
                origins[:, start : start + chunk],
                dirs[:, start : start + chunk],
                n_samples,
                grid,
                background,
                aabb=aabb,
            )
        )
    return RenderOutput(
        rgb=torch.cat([o.rgb for o in outs], dim=1),
        opacity=torch.cat([o.opacity for o in outs], dim=1),
        depth=torch.cat([o.depth for o in outs], dim=1),
        n_evaluated=torch.stack([o.n_evaluated for o in outs]).sum(dim=0),
        n_samples_total=sum(o.n_samples_total for o in outs),
    )
