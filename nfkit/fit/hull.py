"""The visual hull of an object's masks: where a NeRF of it can have density at all.

A point of the object projects inside the object's mask in every view, so a grid cell whose
projection misses the mask of *any* view is empty (space carving). With exact masks (the
alpha channel of ShapenetRender, NeRF-synthetic and the procedural set) this is a superset of
the object, known before step 0, and the fitter uses it twice (``FitConfig.hull``):

- the occupancy grid starts as the hull and never leaves it, so no sample outside the hull is
  evaluated and no floater can grow there (:meth:`nfkit.render.occupancy.OccupancyGrid.carve`);
- rays are drawn only among the training pixels whose ray can cross the hull
  (:func:`hull_pixel_mask`): the others render the background whatever the weights are, so they
  carry no gradient.

The test is conservative: a cell is kept when the bounding rectangle of its 8 projected corners
holds any pixel of non-zero alpha (a summed-area table answers that per cell and view), or
when the rectangle leaves the image (that view cannot rule it out), or when a corner is behind
the camera. Images without alpha (alpha 1 everywhere) give the whole box.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from nfkit.render.rays import DEFAULT_AABB, ray_aabb_intersect


def cell_rectangles(
    c2w: Tensor, focal: float, height: int, width: int, resolution: int, aabb: tuple[float, float] = DEFAULT_AABB
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The bounding rectangle of each grid cell's 8 projected corners in every view.

    Returns ``umin, umax, vmin, vmax`` (continuous pixel coordinates, ``u`` = column) and
    ``behind`` (a corner behind the camera), each (V, R, R, R) over cells ``[i, j, k]``.
    """
    from nfkit.data.cameras import project_points

    v = c2w.shape[0]
    lo, hi = aabb
    r = resolution
    ticks = torch.linspace(lo, hi, r + 1)
    corners = torch.stack(torch.meshgrid(ticks, ticks, ticks, indexing="ij"), dim=-1).reshape(-1, 3)
    uv, depth = project_points(corners, c2w.float(), height, width, float(focal))  # (V, (R+1)³, 2), (V, (R+1)³)
    uv = uv.reshape(v, r + 1, r + 1, r + 1, 2)
    depth = depth.reshape(v, r + 1, r + 1, r + 1)

    def cell_reduce(t: Tensor, op) -> Tensor:  # (V, R+1, R+1, R+1) -> (V, R, R, R) over 8 corners
        t = op(t[:, :-1], t[:, 1:])  # separable: pairs along i, then j, then k
        t = op(t[:, :, :-1], t[:, :, 1:])
        return op(t[..., :-1], t[..., 1:])

    u, w = uv[..., 0].contiguous(), uv[..., 1].contiguous()
    return (
        cell_reduce(u, torch.minimum),
        cell_reduce(u, torch.maximum),
        cell_reduce(w, torch.minimum),
        cell_reduce(w, torch.maximum),
        cell_reduce(depth <= 1e-6, torch.logical_or),
    )


def visual_hull(
    alpha: Tensor,
    c2w: Tensor,
    focal: float,
    resolution: int,
    aabb: tuple[float, float] = DEFAULT_AABB,
    threshold: float = 0.0,
    rectangles: tuple[Tensor, ...] | None = None,
) -> Tensor:
    """(R³,) bool: the cells of an R³ grid over ``aabb`` (flat ``i·R² + j·R + k``, i along x)
    that every view's mask can hold.

    Shapes:
        alpha: (V, H, W) float, the views' alpha (object where ``alpha > threshold``)
        c2w: (V, 4, 4) or (V, 3, 4) camera-to-world matrices (OpenGL axes)
        rectangles: :func:`cell_rectangles` of these cameras, if already computed
    """
    v, h, w = alpha.shape
    umin, umax, vmin, vmax, behind = (t.reshape(v, -1) for t in rectangles or cell_rectangles(c2w, focal, h, w, resolution, aabb))
    fg = (alpha > threshold).to(torch.int32)
    sat = torch.zeros(v, h + 1, w + 1, dtype=torch.int32)
    sat[:, 1:, 1:] = fg.cumsum(1).cumsum(2)
    flat = sat.reshape(v, -1)
    stride = w + 1
    alive = torch.arange(umin.shape[1])  # the cells no view has ruled out yet: few after a few views
    for view in range(v):
        # pixel (col, row) covers [col, col+1) x [row, row+1): the rectangle's pixels
        c0, c1 = umin[view, alive].floor().long(), umax[view, alive].floor().long()
        r0, r1 = vmin[view, alive].floor().long(), vmax[view, alive].floor().long()
        leaves = (c0 < 0) | (r0 < 0) | (c1 >= w) | (r1 >= h)
        c0, c1 = c0.clamp_(0, w - 1), (c1 + 1).clamp_(1, w)
        r0, r1 = r0.clamp_(0, h - 1), (r1 + 1).clamp_(1, h)
        table = flat[view]
        count = table[r1 * stride + c1] - table[r0 * stride + c1] - table[r1 * stride + c0] + table[r0 * stride + c0]
        alive = alive[(count > 0) | leaves | behind[view, alive]]
    keep = torch.zeros(umin.shape[1], dtype=torch.bool)
    keep[alive] = True
    return keep


def hull_pixel_mask(
    hull: Tensor,
    c2w: Tensor,
    focal: float,
    height: int,
    width: int,
    resolution: int,
    aabb: tuple[float, float] = DEFAULT_AABB,
    rectangles: tuple[Tensor, ...] | None = None,
) -> Tensor:
    """(V, H, W) bool: the pixels whose ray (through the pixel centre) can cross the hull.

    A ray crosses a cell only if its pixel centre lies in the cell's projection, so a pixel
    is kept when its centre is inside the bounding rectangle of some cell of the hull dilated
    by one cell (every pixel, for a cell with a corner behind the camera). Only the dilated
    hull's *boundary* cells (those with one of their 26 neighbours outside it, or on the box's
    faces) are painted: a ray that crosses any cell of the set leaves it, wherever the camera
    is, through a boundary cell (the last cell of the set it crosses), so the interior cells'
    rectangles add nothing (the boundary is 21–43 % of the dilated hull's cells on the real
    objects of ``nfkit/bench/realset``). The rectangles are painted with a 2-D difference
    array: a superset of the crossing rays, in a few vectorised passes.

    Shapes: hull (R³,) bool; c2w (V, 4, 4) or (V, 3, 4).
    """
    r = resolution
    v = c2w.shape[0]
    umin, umax, vmin, vmax, behind = rectangles or cell_rectangles(c2w, focal, height, width, r, aabb)
    grid = hull.reshape(1, 1, r, r, r).float()
    dilated = torch.nn.functional.max_pool3d(grid, 3, stride=1, padding=1)
    # outside the box counts as outside the set: pad the complement with ones
    outside = torch.nn.functional.pad(1.0 - dilated, (1, 1, 1, 1, 1, 1), value=1.0)
    near_outside = torch.nn.functional.max_pool3d(outside, 3, stride=1)[0, 0].bool()
    boundary = dilated[0, 0].bool() & near_outside
    cells = boundary[None].expand(v, r, r, r)
    view = torch.arange(v)[:, None, None, None].expand(v, r, r, r)[cells]
    # columns / rows whose centre (c + 0.5) is in [min, max]
    c0 = torch.ceil(umin[cells] - 0.5).long()
    c1 = torch.floor(umax[cells] - 0.5).long()
    r0 = torch.ceil(vmin[cells] - 0.5).long()
    r1 = torch.floor(vmax[cells] - 0.5).long()
    back = behind[cells]
    c0 = torch.where(back, 0, c0.clamp(min=0))
    r0 = torch.where(back, 0, r0.clamp(min=0))
    c1 = torch.where(back, width - 1, c1.clamp(max=width - 1))
    r1 = torch.where(back, height - 1, r1.clamp(max=height - 1))
    some = (c0 <= c1) & (r0 <= r1)
    view, c0, c1, r0, r1 = view[some], c0[some], c1[some], r0[some], r1[some]
    stride = width + 1
    base = view * ((height + 1) * stride)
    corners = torch.cat([base + r0 * stride + c0, base + r0 * stride + c1 + 1,
                         base + (r1 + 1) * stride + c0, base + (r1 + 1) * stride + c1 + 1])
    one = torch.ones(len(view), dtype=torch.int32)
    signs = torch.cat([one, -one, -one, one])
    diff = torch.zeros(v * (height + 1) * stride, dtype=torch.int32).index_add_(0, corners, signs)
    return diff.view(v, height + 1, stride).cumsum(1).cumsum(2)[:, :height, :width] > 0


def hull_ray_mask(
    origins: Tensor,
    dirs: Tensor,
    hull: Tensor,
    resolution: int,
    aabb: tuple[float, float] = DEFAULT_AABB,
    samples_per_cell: float = 2.0,
    chunk: int = 16384,
) -> Tensor:
    """(P,) bool: which of any rays cross a hull cell, by marching (the fitter's training
    pixels take the faster :func:`hull_pixel_mask`, a superset). Tested at ``samples_per_cell`` points per
    cell width along the ray, plus one cell of margin: the hull is dilated by one cell for the
    test, so a ray grazing a corner is kept).

    Shapes: origins, dirs (P, 3); hull (R³,) bool.
    """
    r = resolution
    grid = hull.reshape(1, 1, r, r, r).float()
    dilated = torch.nn.functional.max_pool3d(grid, 3, stride=1, padding=1)[0, 0].bool().reshape(-1)
    lo, hi = aabb
    n = max(int(np.ceil(samples_per_cell * r * 3**0.5)), 2)
    out = torch.zeros(len(origins), dtype=torch.bool)
    for start in range(0, len(origins), chunk):
        o, d = origins[start : start + chunk], dirs[start : start + chunk]
        t0, t1, hit = ray_aabb_intersect(o, d, aabb)
        s = torch.linspace(0, 1, n)
        t = t0[:, None] + (t1 - t0)[:, None] * s[None, :]
        x = o[:, None, :] + d[:, None, :] * t[..., None]
        u = ((x - lo) / (hi - lo) * r).long().clamp_(0, r - 1)
        cells = u[..., 0] * r * r + u[..., 1] * r + u[..., 2]
        out[start : start + chunk] = hit & dilated[cells].any(dim=1)
    return out
