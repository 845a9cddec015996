"""Exact analytic ray casting of :class:`~nfkit.data.primitives.Part` objects (numpy, float64).

Each part is a convex solid, so a ray meets it in one interval ``[t_in, t_out]``: the
intersection of the intervals of the solid's constraints (slabs, a quadric, clip half-spaces).
The visible surface is the smallest positive ``t_in`` over all parts. Shading is Lambertian under
two fixed world-space lights plus ambient light, so a surface point has the same colour in every
view (the NeRFs nfkit fits have no view direction input). Alpha is exactly 1 where a pixel
centre's ray hits the object and 0 elsewhere.
"""

from __future__ import annotations

import numpy as np

from nfkit.data.cameras import pixel_directions
from nfkit.data.primitives import Part

#: Key light (from above, front-right) and fill light (from below-behind), world space.
KEY_LIGHT = np.array([0.45, 0.8, 0.4]) / np.linalg.norm([0.45, 0.8, 0.4])
FILL_LIGHT = np.array([-0.5, -0.3, -0.6]) / np.linalg.norm([-0.5, -0.3, -0.6])
AMBIENT, KEY, FILL = 0.35, 0.6, 0.2

_TINY = 1e-12


def _safe(d: np.ndarray) -> np.ndarray:
    """Direction components with exact zeros nudged away from 0 (keeps the sign convention)."""
    return np.where(np.abs(d) < _TINY, _TINY, d)


def _slab(ok: np.ndarray, dk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval of ``|p_k| <= 1`` along rays with components ``ok + t dk`` (N,)."""
    dk = _safe(dk)
    t1, t2 = (-1.0 - ok) / dk, (1.0 - ok) / dk
    return np.minimum(t1, t2), np.maximum(t1, t2)


def _roots(a: np.ndarray, b: np.ndarray, c: np.ndarray):
    """Sorted real roots of ``a t^2 + b t + c`` (numerically stable form) and the discriminant."""
    disc = b * b - 4 * a * c
    q = -0.5 * (b + np.copysign(np.sqrt(np.maximum(disc, 0.0)), b))
    q = np.where(np.abs(q) < _TINY, _TINY, q)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r1 = q / np.where(np.abs(a) < _TINY, _TINY, a)
    r2 = c / q
    return np.minimum(r1, r2), np.maximum(r1, r2), disc


def _quadric(a, b, c, scale, slab_in, slab_out):
    """Interval where ``a t^2 + b t + c <= 0`` (N,) within a slab interval; ``scale`` is
    ``|d|^2`` for the degeneracy test. For a convex solid the result is one interval.
    Returns (t_in, t_out) of the quadric constraint alone."""
    lo, hi, disc = _roots(a, b, c)
    pos, neg = a > 1e-9 * scale, a < -1e-9 * scale
    t_in = np.full(len(a), np.inf)
    t_out = np.full(len(a), -np.inf)
    # a > 0: inside between the roots
    ok = pos & (disc >= 0)
    t_in[ok], t_out[ok] = lo[ok], hi[ok]
    if neg.any():  # a < 0: inside outside the roots; only one piece meets the slab (convexity)
        every = neg & (disc < 0)
        t_in[every], t_out[every] = -np.inf, np.inf
        two = neg & (disc >= 0)
        first_longer = (np.minimum(lo, slab_out) - slab_in) >= (slab_out - np.maximum(hi, slab_in))
        first, second = two & first_longer, two & ~first_longer
        t_in[first], t_out[first] = -np.inf, lo[first]
        t_in[second], t_out[second] = hi[second], np.inf
    lin = ~(pos | neg)
    if lin.any():  # a ~ 0: linear
        root = -c / np.where(np.abs(b) < _TINY, _TINY, b)
        up, down, flat = lin & (b > 0), lin & (b < 0), lin & (b == 0) & (c <= 0)
        t_in[up], t_out[up] = -np.inf, root[up]
        t_in[down], t_out[down] = root[down], np.inf
        t_in[flat], t_out[flat] = -np.inf, np.inf
    return t_in, t_out


def _cone_coeffs(taper: float) -> tuple[float, float]:
    """``r(y) = al + be * y`` with ``r(-1) = 1``, ``r(1) = taper``."""
    return (1 + taper) / 2, (taper - 1) / 2


def _part_interval(part: Part, o: tuple, d: tuple):
    """Interval of the unit solid along local rays ``o + t d`` (each a tuple of 3 (N,) arrays).

    Returns:
        t_in, t_out: (N,) entry and exit parameters (empty when t_in > t_out).
        which: (N,) index of the constraint that bounds the entry (see :func:`_entry_normals`).
    """
    ox, oy, oz = o
    dx, dy, dz = d
    if part.kind == "box":
        cons = [_slab(ok, dk) for ok, dk in zip(o, d, strict=True)]
    elif part.kind == "ellipsoid":
        inf = np.full(len(ox), np.inf)
        scale = dx * dx + dy * dy + dz * dz
        b = 2 * (ox * dx + oy * dy + oz * dz)
        c = ox * ox + oy * oy + oz * oz - 1.0
        cons = [_quadric(scale, b, c, scale, -inf, inf)]
    else:  # cylinder / cone: x^2 + z^2 <= (al + be y)^2 within |y| <= 1
        al, be = _cone_coeffs(part.taper)
        s_in, s_out = _slab(oy, dy)
        k = al + be * oy
        a = dx * dx + dz * dz - (be * dy) ** 2
        b = 2 * (ox * dx + oz * dz - be * dy * k)
        c = ox * ox + oz * oz - k * k
        cons = [(s_in, s_out), _quadric(a, b, c, dx * dx + dy * dy + dz * dz, s_in, s_out)]
    for nx, ny, nz, h in part.clips:
        den = _safe(dx * nx + dy * ny + dz * nz)
        t = (h - (ox * nx + oy * ny + oz * nz)) / den
        cons.append((np.where(den < 0, t, -np.inf), np.where(den > 0, t, np.inf)))
    t_in, t_out = cons[0]
    which = np.zeros(len(ox), dtype=np.int8)
    for j, (lo, hi) in enumerate(cons[1:], start=1):
        later = lo > t_in
        t_in = np.where(later, lo, t_in)
        which[later] = j
        t_out = np.minimum(t_out, hi)
    return t_in, t_out, which


def _entry_normals(part: Part, p: np.ndarray, which: np.ndarray) -> np.ndarray:
    """(N, 3) outward local normals (unnormalised) at entry points ``p`` (N, 3), from the
    index of the constraint bounding the entry: box 0-2 = x/y/z slabs; ellipsoid 0 = sphere;
    cylinder/cone 0 = y slab, 1 = side; then the clip planes in order."""
    normal = np.zeros_like(p)
    if part.kind == "box":
        n_base = 3
        for k in range(3):
            sel = which == k
            normal[sel, k] = np.sign(p[sel, k])
    elif part.kind == "ellipsoid":
        n_base = 1
        sel = which == 0
        normal[sel] = p[sel]
    else:
        n_base = 2
        al, be = _cone_coeffs(part.taper)
        cap, side = which == 0, which == 1
        normal[cap, 1] = np.sign(p[cap, 1])
        normal[side, 0] = p[side, 0]
        normal[side, 1] = -be * (al + be * p[side, 1])
        normal[side, 2] = p[side, 2]
    for j, clip in enumerate(part.clips):
        normal[which == n_base + j] = clip[:3]
    return normal


_CUBE = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)


def _world_corners(part: Part) -> np.ndarray:
    """(8, 3) world corners of a local box containing the unit solid: the cube [-1, 1]^3,
    widened in x and z for a cone whose top is wider than its base (taper > 1)."""
    widen = max(1.0, part.taper) if part.kind in ("cone", "cylinder") else 1.0
    return (_CUBE * np.array([widen, 1.0, widen])) @ part.matrix.T + part.offset


def _bounding_sphere(part: Part) -> tuple[np.ndarray, float]:
    """World sphere enclosing a part."""
    return part.offset, float(np.linalg.norm(_world_corners(part) - part.offset, axis=1).max())


def _sphere_mask(o, d, centre, radius) -> np.ndarray:
    """Rays (unit ``d``) that pass within ``radius`` of ``centre`` in front of the origin."""
    rel = centre - o
    proj = np.einsum("ij,ij->i", rel, d)
    dist2 = np.einsum("ij,ij->i", rel, rel) - proj**2
    return (dist2 <= radius**2) & (proj + radius > 0)


def _apply(m: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``x @ m.T`` as three (N,) component arrays (faster than a small matmul)."""
    cols = (x[:, 0], x[:, 1], x[:, 2])
    return tuple(m[i, 0] * cols[0] + m[i, 1] * cols[1] + m[i, 2] * cols[2] for i in range(3))


def cast(
    parts: list[Part],
    origins: np.ndarray,
    dirs: np.ndarray,
    candidates: list[np.ndarray] | None = None,
):
    """Nearest hit of each ray with the object.

    Args:
        parts: the object's parts.
        origins, dirs: (N, 3) world rays (``dirs`` need not be unit-norm; ``t`` is measured in
            units of ``|dirs|``).
        candidates: optional, per part, the indices of the rays that may hit it (a
            conservative superset); by default every ray is tested against the part's
            bounding sphere.

    Returns:
        t: (N,) hit parameter (inf where missed).
        index: (N,) index of the part hit (-1 where missed).
        normal: (N, 3) unit world normal at the hit (0 where missed).
    """
    n = len(origins)
    best_t = np.full(n, np.inf)
    best_i = np.full(n, -1, dtype=np.int64)
    best_n = np.zeros((n, 3))
    for i, part in enumerate(parts):
        if candidates is None:
            centre, radius = _bounding_sphere(part)
            sel = np.flatnonzero(_sphere_mask(origins, dirs, centre, radius))
        else:
            sel = candidates[i]
        if len(sel) == 0:
            continue
        inv = np.linalg.inv(part.matrix)
        o = _apply(inv, origins[sel] - part.offset)
        d = _apply(inv, dirs[sel])
        t_in, t_out, which = _part_interval(part, o, d)
        hit = np.flatnonzero((t_in <= t_out) & (t_in > 1e-9) & (t_in < best_t[sel]))
        if len(hit) == 0:
            continue
        idx, t = sel[hit], t_in[hit]
        p = np.stack([o[k][hit] + t * d[k][hit] for k in range(3)], axis=1)
        best_t[idx], best_i[idx] = t, i
        best_n[idx] = np.stack(
            _apply(inv.T, _entry_normals(part, p, which[hit])), axis=1
        )  # n_w = inv^T n_l
    hit = best_i >= 0
    best_n[hit] /= np.sqrt(np.einsum("ij,ij->i", best_n[hit], best_n[hit]))[:, None]
    return best_t, best_i, best_n


def _screen_candidates(
    parts: list[Part], c2w: np.ndarray, height: int, width: int, focal: float
) -> list[np.ndarray]:
    """Per part, the flat (view, row, col) indices of the pixels inside the screen rectangle
    of its projected local box (:func:`_world_corners`, which contains the part), in every view.
    Assumes every camera lies outside the parts' boxes (true for the generator's cameras)."""
    rot, centre = c2w[:, :3, :3], c2w[:, :3, 3]
    rows = np.arange(height)[None, :, None]
    cols = np.arange(width)[None, None, :]
    out = []
    for part in parts:
        corners = _world_corners(part)  # (8, 3)
        cam = np.einsum("vji,vpj->vpi", rot, corners[None] - centre[:, None])  # (V, 8, 3)
        depth = -cam[..., 2]
        if np.any(depth <= 1e-6):  # a camera inside or beside the box: test every pixel
            out.append(np.arange(len(c2w) * height * width))
            continue
        u = focal * cam[..., 0] / depth + 0.5 * width
        v = -focal * cam[..., 1] / depth + 0.5 * height
        # pixel centres c + 0.5 inside [min, max]; one pixel of margin against round-off
        c0, c1 = np.floor(u.min(1)) - 1, np.ceil(u.max(1)) + 1
        r0, r1 = np.floor(v.min(1)) - 1, np.ceil(v.max(1)) + 1
        mask = (
            (rows >= r0[:, None, None])
            & (rows <= r1[:, None, None])
            & (cols >= c0[:, None, None])
            & (cols <= c1[:, None, None])
        )
        out.append(np.flatnonzero(mask))
    return out


def shade(colors: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Lambertian shading with a key and a fill light: (N, 3) albedo, (N, 3) unit normals ->
    (N, 3) RGB in [0, 1]."""
    light = (
        AMBIENT
        + KEY * np.clip(normals @ KEY_LIGHT, 0, None)
        + FILL * np.clip(normals @ FILL_LIGHT, 0, None)
    )
    return np.clip(colors * light[:, None], 0.0, 1.0)


def render_views(
    parts: list[Part], c2w: np.ndarray, height: int, width: int, focal: float
) -> np.ndarray:
    """Render an object from every camera.

    Args:
        parts: the object's parts.
        c2w: (V, 4, 4) camera-to-world matrices (OpenGL convention, see :mod:`cameras`).
        height, width: image size in pixels.
        focal: focal length in pixels.

    Returns:
        (V, H, W, 4) uint8 RGBA, not premultiplied; alpha is 255 on hit pixels, 0 elsewhere,
        and RGB is 0 where alpha is 0.
    """
    c2w = np.asarray(c2w, np.float64)
    # un-normalised directions (camera z = -1): t is then the depth along the viewing axis
    cam = pixel_directions(height, width, focal).reshape(-1, 3)
    rot = c2w[:, :3, :3]
    dirs = np.empty((len(c2w), height * width, 3))
    for i in range(3):
        dirs[..., i] = sum(rot[:, i, j, None] * cam[None, :, j] for j in range(3))
    dirs = dirs.reshape(-1, 3)
    origins = np.repeat(c2w[:, :3, 3], height * width, axis=0)
    candidates = _screen_candidates(parts, c2w, height, width, focal)
    _, index, normals = cast(parts, origins, dirs, candidates)
    hit = np.flatnonzero(index >= 0)
    colors = np.array([p.color for p in parts])
    out = np.zeros((len(index), 4), dtype=np.uint8)
    out[hit, :3] = np.round(shade(colors[index[hit]], normals[hit]) * 255.0)
    out[hit, 3] = 255
    return out.reshape(len(c2w), height, width, 4)
