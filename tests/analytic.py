"""An analytic radiance field for golden tests: a NeRF whose colour and density are constant
inside the object box, so every image has a closed form.

The MLP NeRF below has all weights zero except the first layer's weight on one of
tiny-cuda-nn's constant-1 padding inputs (a bias: hidden unit 0 is relu(1) = 1) and the last
layer's column on that unit, so it outputs rgb = ``COLOUR`` and σ = ``SIGMA`` everywhere inside
the open box (−0.7, 0.7)³ and σ = 0 outside. A ray's colour on black is then
``COLOUR · (1 − exp(−SIGMA · L))`` with L the length of its chord through the box, which is
computed here from the camera in float64, independently of nfkit's ray code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from nfkit.nerf.specs import ArchSpec

COLOUR = np.array([0.85, 0.45, 0.2])
SIGMA = 1.7
BOX = 0.7
SPEC = ArchSpec("cube", "mlp", hidden_layers=1, hidden_dim=4, freq_bands=1)


def cube_params() -> dict[str, np.ndarray]:
    w0 = np.zeros(SPEC.param_shapes()["mlp.0"], np.float32)
    w0[0, SPEC.encoding_dim] = 1.0  # a constant-1 padding input: hidden unit 0 is relu(1) = 1
    w1 = np.zeros(SPEC.param_shapes()["mlp.1"], np.float32)
    w1[:3, 0] = np.log(COLOUR / (1 - COLOUR))  # sigmoid^-1
    w1[3, 0] = math.log(SIGMA) + 1.0  # sigma = exp(raw - 1)
    return {"mlp.0": w0, "mlp.1": w1}


def look_at_origin(eye) -> np.ndarray:
    """Camera-to-world (OpenGL: looks down −z, y up) of a camera at ``eye`` looking at 0."""
    eye = np.asarray(eye, float)
    back = eye / np.linalg.norm(eye)
    right = np.cross([0.0, 1.0, 0.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, eye
    return c2w


def orbit_eye(azimuth: float, elevation: float, distance: float) -> np.ndarray:
    """Azimuth 0 on +z turning toward +x, elevation above the horizon (radians)."""
    return distance * np.array(
        [math.cos(elevation) * math.sin(azimuth), math.sin(elevation), math.cos(elevation) * math.cos(azimuth)]
    )


def chord_lengths(c2w: np.ndarray, height: int, width: int, focal: float) -> np.ndarray:
    """(H, W) length of each pixel-centre ray inside the box; row 0 is the top of the image."""
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d_cam = np.stack([(cols - width / 2) / focal, -(rows - height / 2) / focal, -np.ones_like(cols)], -1)
    d = d_cam @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = c2w[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (-BOX - o) / d, (BOX - o) / d
    near = np.maximum(np.minimum(t0, t1).max(-1), 0.0)
    far = np.maximum(t0, t1).min(-1)
    return np.clip(far - near, 0.0, None)


def cube_image(c2w: np.ndarray, height: int, width: int, focal: float) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) colour on black and (H, W) opacity of the cube NeRF seen from ``c2w``."""
    opacity = 1.0 - np.exp(-SIGMA * chord_lengths(c2w, height, width, focal))
    return COLOUR * opacity[..., None], opacity


def write_cube_views(folder: Path, poses, height: int, width: int, camera_angle_x: float,
                     name: str = "transforms_train.json", subdir: str = "train", extra: dict | None = None) -> None:
    """A transforms file with ground-truth RGBA images of the cube (rgb = COLOUR, alpha =
    opacity), non-square when ``height != width``."""
    focal = 0.5 * width / math.tan(0.5 * camera_angle_x)
    (folder / subdir).mkdir(parents=True, exist_ok=True)
    frames = []
    for i, pose in enumerate(poses):
        _, alpha = cube_image(pose, height, width, focal)
        rgba = np.concatenate([np.broadcast_to(COLOUR, (height, width, 3)), alpha[..., None]], -1)
        Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(folder / subdir / f"r_{i}.png")
        frames.append({"file_path": f"./{subdir}/r_{i}", "transform_matrix": np.asarray(pose).tolist()})
    meta = {"camera_angle_x": camera_angle_x, "frames": frames, **(extra or {})}
    (folder / name).write_text(json.dumps(meta))
