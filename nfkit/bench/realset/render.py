"""Render the real-object check set with a renderer that is not nfkit's: PyBullet's TinyRenderer.

``python -m nfkit.bench.realset.render [--out nfkit/bench/realset/objects] [--resolution 128]``
(needs ``pip install pybullet``, the ``realset`` extra; the rendered set is committed, so only
re-rendering needs it).

The meshes are the scanned and modelled objects shipped in the ``pybullet_data`` package (listed
in :data:`OBJECTS`, sources in this folder's README). Each one is loaded into PyBullet, measured
from depth renders (its bounding box, from the depth buffers of 24 distant views unprojected to
points), centred on the origin with its longest side 1.25 (the dataset convention, SPEC §2) and
rendered by TinyRenderer (a software rasteriser: diffuse lighting from one world-space light plus
ambient, no specular term and no shadows, so a point's colour does not depend on the view, as a
NeRF without view direction assumes):

- ``transforms_train.json``: 36 views, one turn around +y with the ShapenetRender protocol
  (jittered azimuth, elevation 5-55°, distance 1.05-1.4 × the fitting distance);
- ``transforms_test.json``: 8 *separate* cameras, azimuths between the training ones,
  elevations 10-50°, at 1.2 × the fitting distance.

The alpha channel is PyBullet's segmentation mask (exactly 0 or 1). The output follows
``data_specs/dataset-layout.md`` with one class folder per object (``<name>/<name>``), so
``nfkit fit-nerfs nfkit/bench/realset/objects`` and ``python -m nfkit.bench.fit --data ...`` read it.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nfkit.data.cameras import look_at, orbit_eyes

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "objects"
CAMERA_ANGLE_X = 0.8
MAX_EXTENT = 1.25
LIGHT_DIR = (0.4, 1.0, 0.6)  # world space (y-up), towards the light


@dataclass(frozen=True)
class RealObject:
    name: str
    path: str  # relative to pybullet_data
    kind: str  # "obj" (one mesh) or "urdf" (PyBullet loads the links and their textures)
    z_up: bool  # the file is z-up (PyBullet's robots): rotate it to y-up
    rgba: tuple[float, float, float, float] | None = None  # colour of an untextured mesh
    yaw_deg: float = 0.0
    source: str = ""


OBJECTS = (
    RealObject("bunny", "bunny.obj", "obj", False, (0.80, 0.65, 0.45, 1.0), source="Stanford bunny (3D scan), decimated"),
    RealObject("duck", "duck.obj", "obj", False, (1.0, 1.0, 1.0, 1.0), source="COLLADA duck (modelled, texture map)"),
    RealObject("mug", "objects/mug.obj", "obj", True, (0.20, 0.45, 0.80, 1.0), source="mug with handle (modelled)"),
    RealObject("r2d2", "r2d2.urdf", "urdf", True, source="R2D2 robot (modelled, several coloured links)"),
    RealObject("racecar", "racecar/racecar.urdf", "urdf", True, source="MIT racecar (modelled, thin parts)"),
    RealObject("teddy", "teddy_vhacd.urdf", "urdf", True, (0.55, 0.35, 0.20, 1.0), source="teddy bear (modelled, convex parts)"),
    RealObject("lego", "lego/lego.urdf", "urdf", True, source="LEGO brick (modelled, studs)"),
    RealObject("soccerball", "soccerball.obj", "obj", False, (1.0, 1.0, 1.0, 1.0), source="soccer ball (modelled, texture map)"),
)


def _orientation(p, obj: RealObject):
    return p.getQuaternionFromEuler([-math.pi / 2 if obj.z_up else 0.0, math.radians(obj.yaw_deg), 0.0])


def _load(p, data: Path, obj: RealObject, scale: float, position) -> list[int]:
    """Load ``obj`` at ``scale`` with its origin at ``position``; returns the body ids."""
    orn = _orientation(p, obj)
    if obj.kind == "obj":
        kwargs = {"fileName": str(data / obj.path), "meshScale": [scale] * 3}
        if obj.rgba is not None:
            kwargs["rgbaColor"] = list(obj.rgba)
        vis = p.createVisualShape(p.GEOM_MESH, **kwargs)
        body = p.createMultiBody(baseMass=0, baseVisualShapeIndex=vis, basePosition=list(position), baseOrientation=orn)
    else:
        body = p.loadURDF(str(data / obj.path), list(position), orn, globalScaling=scale, useFixedBase=True)
        if obj.rgba is not None:
            for link in range(-1, p.getNumJoints(body)):
                p.changeVisualShape(body, link, rgbaColor=list(obj.rgba))
    return [body]


def _matrices(p, c2w: np.ndarray, near: float, far: float, size: int):
    eye = c2w[:3, 3]
    forward = -c2w[:3, 2]
    view = p.computeViewMatrix(eye.tolist(), (eye + forward).tolist(), c2w[:3, 1].tolist())
    proj = p.computeProjectionMatrixFOV(math.degrees(CAMERA_ANGLE_X), 1.0, near, far)
    return view, proj


def _render(p, c2w: np.ndarray, size: int, near: float, far: float):
    view, proj = _matrices(p, c2w, near, far, size)
    w, h, rgb, depth, seg = p.getCameraImage(
        size, size, view, proj,
        lightDirection=list(LIGHT_DIR), lightColor=[1, 1, 1], lightDistance=10.0, shadow=0,
        lightAmbientCoeff=0.45, lightDiffuseCoeff=0.6, lightSpecularCoeff=0.0,
        renderer=p.ER_TINY_RENDERER,
    )
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(h, w, 4)[..., :3]
    depth = np.asarray(depth, dtype=np.float64).reshape(h, w)
    seg = np.asarray(seg).reshape(h, w)
    return rgb, depth, seg >= 0


def _points_from_depth(c2w, depth, mask, near, far, size):
    """World points of the masked pixels (OpenGL depth buffer -> distance along -z)."""
    z = far * near / (far - (far - near) * depth[mask])
    rows, cols = np.nonzero(mask)
    focal = 0.5 * size / math.tan(0.5 * CAMERA_ANGLE_X)
    x = (cols + 0.5 - 0.5 * size) / focal * z
    y = -(rows + 0.5 - 0.5 * size) / focal * z
    cam = np.stack([x, y, -z], axis=-1)
    return cam @ c2w[:3, :3].T + c2w[:3, 3]


def measure(p, data: Path, obj: RealObject, size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) corners of the object loaded at scale 1, from depth renders all around it:
    first from far away, then twice more from a distance fitted to the last estimate."""
    p.resetSimulation()
    _load(p, data, obj, 1.0, (0, 0, 0))
    rng = np.random.default_rng(0)
    az = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    el = np.deg2rad(rng.uniform(-60, 70, 24))
    centre, radius = np.zeros(3), 5.0
    for _ in range(3):
        dist = 1.6 * radius / math.sin(CAMERA_ANGLE_X / 2)
        near, far = dist / 50, dist * 3
        pts = []
        for c2w in look_at(orbit_eyes(az, el, np.full(24, dist)) + centre, centre):
            _, depth, mask = _render(p, c2w, size, near, far)
            if mask.any():
                pts.append(_points_from_depth(c2w, depth, mask, near, far, size))
        if not pts:
            raise RuntimeError(f"{obj.name}: nothing visible within {dist:.3g} of {centre}")
        pts = np.concatenate(pts)
        lo, hi = np.percentile(pts, 0.1, axis=0), np.percentile(pts, 99.9, axis=0)
        centre, radius = 0.5 * (lo + hi), max(float(np.linalg.norm(hi - lo)) / 2, 1e-3)
    return lo, hi


def cameras(rng: np.random.Generator, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(train (36, 4, 4), test (8, 4, 4)) camera-to-world matrices looking at the origin."""
    fit = radius / math.sin(CAMERA_ANGLE_X / 2)
    v = 36
    start = rng.uniform(0, 1)
    az = (start + np.arange(v) + rng.uniform(-0.25, 0.25, v)) * (2 * np.pi / v)
    el = np.deg2rad(rng.uniform(5, 55, v))
    dist = rng.uniform(1.05, 1.4, v) * fit
    train = look_at(orbit_eyes(az, el, dist))
    t = 8
    az_t = (start + 0.5 + np.arange(t) * (v / t)) * (2 * np.pi / v)
    el_t = np.deg2rad(np.linspace(10, 50, t))
    test = look_at(orbit_eyes(az_t, el_t, np.full(t, 1.2 * fit)))
    return train, test


def _write(folder: Path, split: str, images, c2ws) -> None:
    (folder / split).mkdir(parents=True, exist_ok=True)
    frames = []
    for i, (img, pose) in enumerate(zip(images, c2ws, strict=True)):
        Image.fromarray(img).save(folder / split / f"{i:02d}.png", optimize=True)
        frames.append({"file_path": f"./{split}/{i:02d}", "transform_matrix": np.round(pose, 8).tolist()})
    (folder / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": CAMERA_ANGLE_X, "frames": frames}, indent=1))


def render_object(p, data: Path, obj: RealObject, out: Path, size: int) -> dict:
    lo, hi = measure(p, data, obj)
    scale = MAX_EXTENT / float((hi - lo).max())
    centre = 0.5 * (lo + hi)
    p.resetSimulation()
    _load(p, data, obj, scale, (-scale * centre).tolist())
    half = 0.5 * scale * (hi - lo)
    radius = float(np.linalg.norm(half))
    rng = np.random.default_rng([7, sum(obj.name.encode())])
    train, test = cameras(rng, radius)
    folder = out / obj.name / obj.name
    for split, c2ws in (("train", train), ("test", test)):
        images = []
        for c2w in c2ws:
            rgb, _, mask = _render(p, c2w, size, 0.05, 10.0)
            images.append(np.concatenate([rgb * mask[..., None], (mask * 255).astype(np.uint8)[..., None]], axis=-1).astype(np.uint8))
        _write(folder, split, images, c2ws)
    meta = {
        "object_id": obj.name, "class": obj.name, "source": obj.source, "file": f"pybullet_data/{obj.path}",
        "renderer": "pybullet TinyRenderer", "bbox_min": (-half).round(6).tolist(), "bbox_max": half.round(6).tolist(),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nfkit.bench.realset.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output dataset folder (replaced)")
    parser.add_argument("--resolution", type=int, default=128, help="image size in pixels (default 128)")
    parser.add_argument("--only", action="append", help="render only these objects (repeatable)")
    args = parser.parse_args(argv)
    try:
        import pybullet as p
        import pybullet_data
    except ImportError:
        parser.error("needs pybullet: pip install pybullet (or pip install -e '.[realset]')")
    data = Path(pybullet_data.getDataPath())
    p.connect(p.DIRECT)
    chosen = [o for o in OBJECTS if not args.only or o.name in args.only]
    for obj in chosen:
        folder = args.out / obj.name
        if folder.exists():
            shutil.rmtree(folder)
        meta = render_object(p, data, obj, args.out, args.resolution)
        print(f"{obj.name}: {meta['source']}; half extents {meta['bbox_max']}")
    p.disconnect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
