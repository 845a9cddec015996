"""Exact ray casting of primitives, checked against brute-force sampling of inside tests."""

import math

import numpy as np
import pytest

from nfkit.data.cameras import focal_from_angle, look_at, orbit_eyes
from nfkit.data.primitives import (
    Part,
    box,
    cone,
    ellipsoid,
    object_bounds,
    part_bounds,
    rot_x,
    rot_y,
)
from nfkit.data.raycast import cast, render_views


def inside(part: Part, x: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """Independent point-in-solid test, straight from the definitions in primitives.py."""
    p = (x - part.offset) @ np.linalg.inv(part.matrix).T
    if part.kind == "box":
        ok = np.all(np.abs(p) <= 1 + tol, axis=-1)
    elif part.kind == "ellipsoid":
        ok = np.sum(p * p, axis=-1) <= (1 + tol) ** 2
    else:
        r = 1 + (part.taper - 1) * (p[..., 1] + 1) / 2
        ok = (np.abs(p[..., 1]) <= 1 + tol) & (np.hypot(p[..., 0], p[..., 2]) <= r + tol)
    for n0, n1, n2, h in part.clips:
        ok &= p @ np.array([n0, n1, n2]) <= h + tol
    return ok


def random_parts(rng: np.random.Generator, n: int) -> list[Part]:
    parts = []
    for _ in range(n):
        kind = rng.choice(["box", "ellipsoid", "cylinder", "cone", "pointed", "flared"])
        rot = rot_y(rng.uniform(0, 6.3)) @ rot_x(rng.uniform(-1.5, 1.5))
        centre = rng.uniform(-0.4, 0.4, 3)
        size = rng.uniform(0.1, 0.5, 3)
        clips = [np.r_[rng.normal(size=3), rng.uniform(0.0, 0.6)]] if rng.random() < 0.4 else None
        if kind == "box":
            parts.append(box(centre, size, [1, 0, 0], rot=rot, clips=clips))
        elif kind == "ellipsoid":
            parts.append(ellipsoid(centre, size, [0, 1, 0], rot=rot, clips=clips))
        else:
            axis = rot @ np.array([0, 1.0, 0]) * size[0]
            r1 = {
                "cylinder": size[1],
                "cone": size[1] * 0.5,
                "pointed": 0.0,
                "flared": size[1] * 1.7,
            }[kind]
            part = cone(
                centre - axis, centre + axis, size[1], r1, [0, 0, 1], squash=rng.uniform(0.5, 1.0)
            )
            if clips is not None:
                part = Part(
                    part.kind, part.matrix, part.offset, part.color, part.taper, np.array(clips)
                )
            parts.append(part)
    return parts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cast_matches_brute_force_sampling(seed):
    rng = np.random.default_rng(seed)
    parts = random_parts(rng, 6)
    n_rays = 1500
    origins = rng.normal(size=(n_rays, 3))
    origins = 3.0 * origins / np.linalg.norm(origins, axis=1, keepdims=True)
    targets = rng.uniform(-0.6, 0.6, (n_rays, 3))
    dirs = targets - origins
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    t, index, normal = cast(parts, origins, dirs)

    ts = np.linspace(1.0, 5.0, 1001)  # all parts lie within distance 1.6 of the origin
    step = ts[1] - ts[0]
    points = origins[:, None, :] + ts[None, :, None] * dirs[:, None, :]  # (N, S, 3)
    occupied = np.zeros(points.shape[:2], bool)
    for part in parts:
        occupied |= inside(part, points)
    sampled_hit = occupied.any(axis=1)
    first = np.where(sampled_hit, ts[np.argmax(occupied, axis=1)], np.inf)
    # (1) wherever sampling finds the solid, the cast hits it, no later than the first sample;
    # where the cast's solid chord is long, the first sample follows within one step
    assert np.all(index[sampled_hit] >= 0)
    assert np.all(t[sampled_hit] <= first[sampled_hit] + 1e-9)
    deep = np.zeros(len(t), bool)
    for i, part in enumerate(parts):
        mine = index == i
        deep[mine] = inside(part, origins[mine] + (t[mine, None] + step) * dirs[mine])
    assert deep.sum() > 300
    assert np.all(first[deep] <= t[deep] + step + 1e-9)
    # (2) every cast hit lies on the surface of the part it names, with nothing in front
    hit = np.flatnonzero(index >= 0)
    assert len(hit) > 300
    at = origins[hit] + t[hit, None] * dirs[hit]
    before = origins[hit] + (t[hit, None] - 1e-4) * dirs[hit]
    for i, part in enumerate(parts):
        mine = index[hit] == i
        assert np.all(inside(part, at[mine], tol=1e-6))
        assert not np.any(inside(part, before))
    # normals are unit length and face the incoming ray
    assert np.allclose(np.linalg.norm(normal[hit], axis=1), 1.0)
    assert np.all(np.einsum("ij,ij->i", normal[hit], dirs[hit]) < 1e-9)


def test_sphere_normals_and_silhouette_are_exact():
    sphere = [ellipsoid([0, 0, 0], 0.5, [1, 1, 1])]
    c2w = look_at(orbit_eyes([0.7], [0.3], [3.0]))
    size, focal = 48, focal_from_angle(0.8, 48)
    rgba = render_views(sphere, c2w, size, size, focal)
    # analytic silhouette: a pixel-centre ray hits iff its distance to the centre is < 0.5
    from nfkit.data.cameras import pixel_directions

    d = pixel_directions(size, size, focal) @ c2w[0, :3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = c2w[0, :3, 3]
    dist = np.linalg.norm(np.cross(d, -o), axis=-1)
    assert np.array_equal(rgba[0, ..., 3] == 255, dist < 0.5)
    t, index, normal = cast(sphere, np.broadcast_to(o, d.shape).reshape(-1, 3), d.reshape(-1, 3))
    p = o + t[index >= 0, None] * d.reshape(-1, 3)[index >= 0]
    assert np.allclose(normal[index >= 0], p / 0.5, atol=1e-9)


def test_render_alpha_is_binary_and_rgb_is_zero_outside():
    parts = random_parts(np.random.default_rng(5), 5)
    c2w = look_at(orbit_eyes(np.linspace(0, 6, 4), np.full(4, 0.5), np.full(4, 3.5)))
    rgba = render_views(parts, c2w, 32, 32, focal_from_angle(0.8, 32))
    assert rgba.dtype == np.uint8 and rgba.shape == (4, 32, 32, 4)
    assert set(np.unique(rgba[..., 3])) == {0, 255}
    assert np.all(rgba[..., :3][rgba[..., 3] == 0] == 0)


def test_shading_does_not_depend_on_the_view():
    sphere = [ellipsoid([0, 0, 0], 0.5, [0.8, 0.4, 0.2])]
    point = np.array([0.0, 0.3, 0.4])  # on the sphere, seen from both cameras below
    eyes = np.array([[0.2, 2.0, 3.0], [-1.5, 1.0, 3.0]])
    dirs = point - eyes
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    t, index, normal = cast(sphere, eyes, dirs)
    assert np.all(index == 0)
    assert np.allclose(eyes + t[:, None] * dirs, point, atol=1e-9)
    assert np.allclose(normal[0], normal[1])


def test_bounds_are_exact_for_unclipped_parts_and_contain_clipped_ones():
    rng = np.random.default_rng(7)
    for part in random_parts(rng, 30):
        lo, hi = part_bounds(part)
        # sample the solid densely in its local cube: all inside points lie in the box
        widen = max(1.0, part.taper)  # a flared cone's top is wider than the unit cube
        local = rng.uniform(-1, 1, (20000, 3)) * np.array([widen, 1.0, widen])
        world = local @ part.matrix.T + part.offset
        pts = world[inside(part, world)]
        assert np.all(pts >= lo - 1e-9) and np.all(pts <= hi + 1e-9)
        if len(part.clips) == 0 or part.kind == "box":
            assert np.all(pts.min(0) - lo < 0.05 * (hi - lo) + 1e-9)  # tight within sampling
            assert np.all(hi - pts.max(0) < 0.05 * (hi - lo) + 1e-9)
    lo, hi = object_bounds(random_parts(rng, 3))
    assert np.all(lo < hi) and math.isfinite(float(lo.sum()))


def test_screen_space_culling_loses_no_hit():
    """render_views only tests each part against the pixels of its projected box; a plain
    cast of every pixel ray against every part must find exactly the same mask."""
    from nfkit.data.cameras import pixel_directions

    parts = random_parts(np.random.default_rng(11), 8)
    c2w = look_at(orbit_eyes(np.linspace(0, 6, 5), np.linspace(-0.3, 1.2, 5), np.full(5, 2.6)))
    size, focal = 40, focal_from_angle(0.8, 40)
    rgba = render_views(parts, c2w, size, size, focal)
    for v in range(len(c2w)):
        d = pixel_directions(size, size, focal).reshape(-1, 3) @ c2w[v, :3, :3].T
        o = np.broadcast_to(c2w[v, :3, 3], d.shape)
        _, index, _ = cast(parts, o, d)
        assert np.array_equal(rgba[v, ..., 3].reshape(-1) == 255, index >= 0)
