"""Solid primitives for the procedural dataset: affine images of convex unit solids.

Every part is ``world = matrix @ local + offset`` applied to one unit solid, optionally cut by
half-spaces given in local coordinates:

========== =========================================================================
kind       unit solid (local coordinates)
========== =========================================================================
box        ``|x|, |y|, |z| <= 1``
ellipsoid  ``x^2 + y^2 + z^2 <= 1``
cylinder   ``x^2 + z^2 <= 1``, ``|y| <= 1`` (a cone with taper 1)
cone       ``x^2 + z^2 <= r(y)^2``, ``|y| <= 1``, ``r(-1) = 1``, ``r(1) = taper`` (a frustum;
           taper 0 is a pointed cone)
========== =========================================================================

A clip ``(nx, ny, nz, h)`` keeps the local points with ``n . p <= h``. All solids stay convex, so
a ray meets each part in one interval (see :mod:`nfkit.data.raycast`). Since the map is affine,
a smooth deformation of the whole object can be applied per part to first order
(:func:`deform`), and the exact bounding box of unclipped parts is known in closed form.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field, replace
from itertools import combinations

import numpy as np

KINDS = ("box", "ellipsoid", "cylinder", "cone")


@dataclass(frozen=True)
class Part:
    """One solid part of an object.

    Attributes:
        kind: one of :data:`KINDS`.
        matrix: (3, 3) linear map local -> world (columns = the scaled local axes).
        offset: (3,) world position of the local origin.
        color: (3,) albedo in [0, 1].
        taper: cone only: top radius / bottom radius.
        clips: (K, 4) local half-spaces ``n . p <= h`` that cut the solid.
        group: semantic name ("seat", "leg", ...); parts of one group share a colour.
    """

    kind: str
    matrix: np.ndarray
    offset: np.ndarray
    color: np.ndarray
    taper: float = 1.0
    clips: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    group: str = ""

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "group": self.group,
            "matrix": np.round(self.matrix, 6).tolist(),
            "offset": np.round(self.offset, 6).tolist(),
            "color": np.round(self.color, 4).tolist(),
            "taper": round(float(self.taper), 6),
            "clips": np.round(self.clips, 6).tolist(),
        }


# ----------------------------------------------------------------------------- rotations


def rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _frame_along(axis: np.ndarray) -> np.ndarray:
    """(3, 3) orthonormal frame whose column 1 (local y) is ``axis`` normalised."""
    y = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0, 0]) if abs(y[0]) < 0.9 else np.array([0, 0, 1.0])
    x = np.cross(y, helper)
    x /= np.linalg.norm(x)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=1)


# ----------------------------------------------------------------------------- constructors


def _arr(v) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


def box(center, size, color, rot=None, clips=None, group: str = "") -> Part:
    """Box with full edge lengths ``size`` (3,), rotated by ``rot`` (3, 3) about its centre."""
    r = np.eye(3) if rot is None else _arr(rot)
    return Part(
        "box",
        r @ np.diag(_arr(size) / 2),
        _arr(center),
        _arr(color),
        clips=_arr(clips).reshape(-1, 4) if clips is not None else np.zeros((0, 4)),
        group=group,
    )


def ellipsoid(center, radii, color, rot=None, clips=None, group: str = "") -> Part:
    """Ellipsoid with semi-axes ``radii`` (3,), rotated by ``rot``."""
    r = np.eye(3) if rot is None else _arr(rot)
    return Part(
        "ellipsoid",
        r @ np.diag(_arr(radii) * np.ones(3)),
        _arr(center),
        _arr(color),
        clips=_arr(clips).reshape(-1, 4) if clips is not None else np.zeros((0, 4)),
        group=group,
    )


def cone(p0, p1, r0: float, r1: float, color, group: str = "", squash: float = 1.0) -> Part:
    """Frustum from ``p0`` (radius ``r0``) to ``p1`` (radius ``r1``); ``r1 = r0`` is a
    cylinder. ``squash`` scales the cross-section along the frame's local z (elliptic)."""
    p0, p1 = _arr(p0), _arr(p1)
    frame = _frame_along(p1 - p0)
    half = np.linalg.norm(p1 - p0) / 2
    matrix = frame @ np.diag([r0, half, r0 * squash])
    kind = "cylinder" if abs(r1 - r0) < 1e-12 else "cone"
    return Part(kind, matrix, (p0 + p1) / 2, _arr(color), taper=r1 / r0, group=group)


def cylinder(p0, p1, radius: float, color, group: str = "", squash: float = 1.0) -> Part:
    """Closed cylinder from ``p0`` to ``p1``."""
    return cone(p0, p1, radius, radius, color, group=group, squash=squash)


def capsule(p0, p1, radius: float, color, group: str = "") -> list[Part]:
    """Cylinder with hemispherical (here: full spherical) end caps."""
    return [
        cylinder(p0, p1, radius, color, group=group),
        ellipsoid(p0, radius, color, group=group),
        ellipsoid(p1, radius, color, group=group),
    ]


def random_color(rng: np.random.Generator, dark: bool = False) -> np.ndarray:
    """A random saturated colour (HSV sampled); ``dark`` gives tyre/screen-like tones."""
    h = rng.uniform(0, 1)
    if dark:
        s, v = rng.uniform(0.0, 0.4), rng.uniform(0.08, 0.25)
    else:
        s, v = rng.uniform(0.35, 0.9), rng.uniform(0.45, 0.95)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


# ----------------------------------------------------------------------------- geometry


def _box_polytope_vertices(clips: np.ndarray) -> np.ndarray:
    """Vertices (M, 3) of the unit box cut by half-spaces ``clips`` (K, 4), local coords."""
    planes = [np.r_[np.eye(3)[i] * s, 1.0] for i in range(3) for s in (1.0, -1.0)]
    planes += list(clips)
    planes = np.array(planes)
    verts = []
    for i, j, k in combinations(range(len(planes)), 3):
        a = planes[[i, j, k], :3]
        if abs(np.linalg.det(a)) < 1e-9:
            continue
        p = np.linalg.solve(a, planes[[i, j, k], 3])
        if np.all(planes[:, :3] @ p <= planes[:, 3] + 1e-9):
            verts.append(p)
    if not verts:
        raise ValueError("a clipped box is empty")
    return np.array(verts)


def part_bounds(part: Part) -> tuple[np.ndarray, np.ndarray]:
    """World axis-aligned bounding box ``(lo, hi)`` of a part. Exact for unclipped parts and
    clipped boxes; for clipped round parts it is the (larger) box of the uncut solid."""
    m, o = part.matrix, part.offset
    if part.kind == "box":
        if len(part.clips):
            pts = _box_polytope_vertices(part.clips) @ m.T + o
            return pts.min(0), pts.max(0)
        half = np.abs(m).sum(axis=1)
    elif part.kind == "ellipsoid":
        half = np.linalg.norm(m, axis=1)
    else:  # cylinder / cone: union of the two cap discs
        disc = np.sqrt(m[:, 0] ** 2 + m[:, 2] ** 2)
        bottom, top = o - m[:, 1], o + m[:, 1]
        lo = np.minimum(bottom - disc, top - disc * part.taper)
        hi = np.maximum(bottom + disc, top + disc * part.taper)
        return lo, hi
    return o - half, o + half


def object_bounds(parts: list[Part]) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounding box ``(lo, hi)`` of all parts, each (3,)."""
    bounds = [part_bounds(p) for p in parts]
    return np.min([b[0] for b in bounds], axis=0), np.max([b[1] for b in bounds], axis=0)


_GRID = np.stack(np.meshgrid(*[np.linspace(-0.75, 0.75, 7)] * 3, indexing="ij"), axis=-1).reshape(
    -1, 3
)


def _local_margin(part: Part, p: np.ndarray) -> np.ndarray:
    """(N,) how far local points ``p`` (N, 3) lie inside the unit solid (negative outside), in
    local units: the smallest slack over the solid's constraints and its clip planes."""
    if part.kind == "box":
        margin = 1.0 - np.abs(p).max(axis=1)
    elif part.kind == "ellipsoid":
        margin = 1.0 - np.linalg.norm(p, axis=1)
    else:
        radius = 1.0 + (part.taper - 1.0) * (p[:, 1] + 1.0) / 2.0
        margin = np.minimum(1.0 - np.abs(p[:, 1]), radius - np.hypot(p[:, 0], p[:, 2]))
    for clip in part.clips:
        margin = np.minimum(margin, (clip[3] - p @ clip[:3]) / np.linalg.norm(clip[:3]))
    return margin


def interior_point(parts: list[Part]) -> np.ndarray:
    """(3,) a point deep inside the object: over a local grid in every part, the one whose
    margin times the part's thinnest world half-size is largest (clipped parts included)."""
    best, best_depth = None, -np.inf
    for part in parts:
        depth = _local_margin(part, _GRID) * np.linalg.svd(part.matrix, compute_uv=False).min()
        i = int(np.argmax(depth))
        if depth[i] > best_depth:
            best, best_depth = part.matrix @ _GRID[i] + part.offset, float(depth[i])
    if best is None or best_depth <= 0:
        raise ValueError("could not find a point inside the object")
    return best


def normalize(parts: list[Part], max_extent: float) -> list[Part]:
    """Centre the bounding box on the origin and scale so its longest side is ``max_extent``."""
    lo, hi = object_bounds(parts)
    centre, scale = (lo + hi) / 2, max_extent / float((hi - lo).max())
    return [replace(p, matrix=p.matrix * scale, offset=(p.offset - centre) * scale) for p in parts]


def deform(parts: list[Part], rng: np.random.Generator, strength: float = 1.0) -> list[Part]:
    """Random smooth deformation of a whole object, applied per part to first order.

    The warp is ``phi(x) = S (x + sum_k a_k sin(w_k . x + c_k))`` (a few low-frequency waves
    and an anisotropic scale ``S``). Each part's origin moves to ``phi(offset)`` and its axes
    are mapped by the Jacobian of ``phi`` there, so neighbouring parts move together and the
    overall structure is kept (nerf2vec's augmentation, seed 001 §3.1).
    """
    lo, hi = object_bounds(parts)
    extent = float((hi - lo).max())
    n_waves = 3
    amps = rng.normal(0.0, 0.035 * extent * strength, size=(n_waves, 3))
    freqs = rng.normal(0.0, 2.0 / extent, size=(n_waves, 3))
    phases = rng.uniform(0, 2 * np.pi, size=n_waves)
    scale = np.diag(rng.uniform(1 - 0.18 * strength, 1 + 0.18 * strength, size=3))
    out = []
    for p in parts:
        arg = freqs @ p.offset + phases  # (n_waves,)
        moved = p.offset + amps.T @ np.sin(arg)
        jac = np.eye(3) + (amps * np.cos(arg)[:, None]).T @ freqs
        out.append(replace(p, matrix=scale @ jac @ p.matrix, offset=scale @ moved))
    return out


def recolor(parts: list[Part], rng: np.random.Generator) -> list[Part]:
    """A new random colour for every component (augmented copies, seed 001 §3.1): parts of one
    named group (the four legs, the pieces of a capsule) share it, other parts get their own."""
    colors: dict[str, np.ndarray] = {}
    out = []
    for i, p in enumerate(parts):
        key = p.group or f"#{i}"
        if key not in colors:
            colors[key] = random_color(rng)
        out.append(replace(p, color=colors[key]))
    return out
