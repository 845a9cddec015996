"""Camera conventions: pixel centres, axes, projection as the inverse of ray generation."""

import math

import numpy as np
import pytest
import torch

from nfkit.data.cameras import camera_rays, focal_from_angle, look_at, orbit_eyes, project_points


def _poses(n=5, seed=0):
    rng = np.random.default_rng(seed)
    eyes = orbit_eyes(
        rng.uniform(0, 2 * math.pi, n), rng.uniform(0.1, 1.2, n), rng.uniform(2, 5, n)
    )
    return torch.from_numpy(look_at(eyes, target=rng.normal(0, 0.2, 3)))


def test_focal_from_angle():
    assert focal_from_angle(math.pi / 2, 100) == pytest.approx(50.0)
    with pytest.raises(ValueError):
        focal_from_angle(0.0, 100)


def test_look_at_is_a_rotation_that_looks_at_the_target():
    target = np.array([0.1, -0.2, 0.3])
    c2w = look_at(orbit_eyes([0.3, 2.0], [0.4, 0.9], [3.0, 4.0]), target=target)
    for pose in c2w:
        rot = pose[:3, :3]
        assert np.allclose(rot.T @ rot, np.eye(3), atol=1e-12)
        assert np.linalg.det(rot) == pytest.approx(1.0)
        forward = -rot[:, 2]  # the camera looks down -z
        to_target = target - pose[:3, 3]
        assert np.allclose(forward, to_target / np.linalg.norm(to_target))
        assert rot[1, 1] > 0  # camera up points to world +y (upper hemisphere, no roll)
        assert rot[1, 0] == pytest.approx(0.0, abs=1e-12)  # camera x stays horizontal


def test_camera_rays_shapes_and_pixel_convention():
    c2w = torch.eye(4, dtype=torch.float64)[None]
    origins, dirs = camera_rays(c2w, 3, 4, focal=2.0)
    assert origins.shape == dirs.shape == (1, 3, 4, 3)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(1, 3, 4, dtype=torch.float64))
    # pixel (row 0, col 0): centre (0.5, 0.5) -> x = (0.5 - 2) / 2, y = +(1.5 - 0.5) / 2 (row 0 = top)
    expected = torch.tensor([-0.75, 0.5, -1.0], dtype=torch.float64)
    assert torch.allclose(dirs[0, 0, 0], expected / expected.norm())
    # identity camera at the origin looks down -z with +y up
    assert torch.all(dirs[..., 2] < 0)
    assert torch.all(dirs[0, 0, :, 1] > 0) and torch.all(dirs[0, -1, :, 1] < 0)
    with pytest.raises(ValueError, match="shape"):
        camera_rays(torch.eye(4)[None, :2], 3, 4, 2.0)


def test_projecting_points_on_pixel_rays_returns_the_pixel_centres():
    c2w = _poses()
    h, w, focal = 6, 8, 7.5
    origins, dirs = camera_rays(c2w, h, w, focal)
    depth_along = 3.0
    points = origins + depth_along * dirs  # (V, H, W, 3)
    for v in range(len(c2w)):
        uv, depth = project_points(points[v].reshape(-1, 3), c2w, h, w, focal)
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        expected = torch.stack([cols + 0.5, rows + 0.5], dim=-1).reshape(-1, 2).to(uv.dtype)
        assert torch.allclose(uv[v], expected, atol=1e-9)
        assert torch.all(depth[v] > 0)


def test_points_behind_the_camera_have_negative_depth():
    c2w = _poses(2)
    behind = c2w[:, :3, 3] + c2w[:, :3, 2]  # one unit along +z (the camera looks down -z)
    _, depth = project_points(behind, c2w, 8, 8, 10.0)
    assert depth[0, 0] < 0 and depth[1, 1] < 0
    with pytest.raises(ValueError, match=r"\(P, 3\)"):
        project_points(torch.zeros(3), c2w, 8, 8, 10.0)
