"""Pinhole cameras in the Blender / NeRF-synthetic (OpenGL) convention.

Conventions (SPEC §2, shared by the loader, the generator and the renderers):

- ``c2w`` is a 4x4 camera-to-world matrix; its columns 0, 1, 2 are the camera's x (right),
  y (up) and z (backward) axes in world space and column 3 is the camera centre. The camera
  looks down its -z axis; world space is y-up.
- Image row 0 is the top of the image; column 0 is the left.
- ``focal = 0.5 * W / tan(0.5 * camera_angle_x)`` in pixels, the principal point is at
  ``(W / 2, H / 2)`` and pixel ``(col, row)`` covers ``[col, col + 1) x [row, row + 1)``, so
  its centre is at ``(col + 0.5, row + 0.5)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from nfkit.errors import UserError


def focal_from_angle(camera_angle_x: float, width: int) -> float:
    """Focal length in pixels for a horizontal field of view ``camera_angle_x`` (radians)."""
    if not 0.0 < camera_angle_x < math.pi:
        raise UserError(f"camera_angle_x must be in (0, pi) radians, got {camera_angle_x}")
    return 0.5 * width / math.tan(0.5 * camera_angle_x)


def _check_c2w(c2w: Tensor) -> None:
    if c2w.ndim != 3 or tuple(c2w.shape[1:]) not in ((4, 4), (3, 4)):
        raise ValueError(f"c2w must have shape (V, 4, 4) or (V, 3, 4), got {tuple(c2w.shape)}")


def pixel_directions(height: int, width: int, focal: float) -> np.ndarray:
    """(H, W, 3) float64 camera-space directions (not normalised) through the pixel centres:
    ``((col + 0.5 - W/2) / f, -(row + 0.5 - H/2) / f, -1)``. The single place where the pixel
    convention is written down; :func:`camera_rays` and the generator's renderer use it."""
    if height <= 0 or width <= 0 or focal <= 0:
        raise ValueError(f"need positive height, width and focal, got {height}, {width}, {focal}")
    x = (np.arange(width) + 0.5 - 0.5 * width) / focal
    y = -(np.arange(height) + 0.5 - 0.5 * height) / focal
    dirs = np.empty((height, width, 3))
    dirs[..., 0] = x[None, :]
    dirs[..., 1] = y[:, None]
    dirs[..., 2] = -1.0
    return dirs


def camera_rays(c2w: Tensor, height: int, width: int, focal: float) -> tuple[Tensor, Tensor]:
    """World-space rays through the centres of every pixel.

    Args:
        c2w: (V, 4, 4) or (V, 3, 4) camera-to-world matrices (OpenGL axes).
        height, width: image size in pixels.
        focal: focal length in pixels.

    Returns:
        origins: (V, H, W, 3) camera centres, broadcast per pixel (an expanded view).
        directions: (V, H, W, 3) unit-norm ray directions in world space.

    Dtype and device follow ``c2w``.
    """
    _check_c2w(c2w)
    dirs_cam = torch.from_numpy(pixel_directions(height, width, focal)).to(c2w.device, c2w.dtype)
    directions = torch.einsum("vij,hwj->vhwi", c2w[:, :3, :3], dirs_cam)
    directions = directions / torch.linalg.norm(directions, dim=-1, keepdim=True)
    origins = c2w[:, None, None, :3, 3].expand_as(directions)
    return origins, directions


def project_points(
    points: Tensor, c2w: Tensor, height: int, width: int, focal: float
) -> tuple[Tensor, Tensor]:
    """Project world points into every camera.

    Args:
        points: (P, 3) world-space points.
        c2w: (V, 4, 4) or (V, 3, 4) camera-to-world matrices.
        height, width: image size in pixels.
        focal: focal length in pixels.

    Returns:
        uv: (V, P, 2) continuous pixel coordinates ``(u = column, v = row)``; the pixel that
            contains a point is ``(floor(u), floor(v))``. Undefined where ``depth <= 0``.
        depth: (V, P) distance in front of the camera along its viewing axis (-z); points
            behind the camera have ``depth <= 0``.
    """
    _check_c2w(c2w)
    if points.ndim != 2 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (P, 3), got {tuple(points.shape)}")
    points = points.to(c2w.dtype)
    rot = c2w[:, :3, :3]  # (V, 3, 3)
    centre = c2w[:, :3, 3]  # (V, 3)
    # world -> camera: R^T (p - c)
    rel = points[None, :, :] - centre[:, None, :]  # (V, P, 3)
    cam = torch.einsum("vji,vpj->vpi", rot, rel)  # (V, P, 3)
    depth = -cam[..., 2]
    safe = torch.where(depth.abs() > 1e-12, depth, torch.full_like(depth, 1e-12))
    u = focal * cam[..., 0] / safe + 0.5 * width
    v = -focal * cam[..., 1] / safe + 0.5 * height
    return torch.stack([u, v], dim=-1), depth


def look_at(
    eye: np.ndarray, target: np.ndarray | None = None, up: np.ndarray | None = None
) -> np.ndarray:
    """Camera-to-world matrices of cameras at ``eye`` looking at ``target`` (OpenGL axes).

    Args:
        eye: (V, 3) or (3,) camera centres.
        target: (3,) point looked at; default the origin.
        up: (3,) world up; default +y.

    Returns:
        (V, 4, 4) float64 camera-to-world matrices (or (4, 4) for a single eye).
    """
    eye = np.asarray(eye, dtype=np.float64)
    single = eye.ndim == 1
    eye = np.atleast_2d(eye)
    target = np.zeros(3) if target is None else np.asarray(target, dtype=np.float64)
    up = np.array([0.0, 1.0, 0.0]) if up is None else np.asarray(up, dtype=np.float64)
    back = eye - target
    back /= np.linalg.norm(back, axis=-1, keepdims=True)
    right = np.cross(up, back)
    norm = np.linalg.norm(right, axis=-1, keepdims=True)
    if np.any(norm < 1e-9):
        raise ValueError("look_at: the viewing direction is parallel to the up vector")
    right /= norm
    cam_up = np.cross(back, right)
    c2w = np.zeros((len(eye), 4, 4))
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, cam_up, back, eye
    c2w[:, 3, 3] = 1.0
    return c2w[0] if single else c2w


def orbit_eyes(azimuth: np.ndarray, elevation: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Camera centres on spheres around the origin, y-up.

    Args:
        azimuth: (V,) radians around the vertical (y) axis, 0 on +z, increasing toward +x.
        elevation: (V,) radians above the horizontal plane (positive = upper hemisphere).
        distance: (V,) distance to the origin.

    Returns:
        (V, 3) camera centres.
    """
    az, el, d = (np.asarray(a, dtype=np.float64) for a in (azimuth, elevation, distance))
    return np.stack(
        [d * np.cos(el) * np.sin(az), d * np.sin(el), d * np.cos(el) * np.cos(az)], axis=-1
    )
