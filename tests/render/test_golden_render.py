"""Golden renders of an analytic field (``tests/analytic.py``: a cube of constant colour and
density, images in closed form) through the library and the ``render`` command, with dataset,
turntable and cameras-file cameras, on non-square images."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.data.multiview import load_cameras, load_object
from nfkit.nerf.store import NerfRecord, write_nerf_shard
from nfkit.render.views import render_views

from ..analytic import SPEC, cube_image, cube_params, look_at_origin, orbit_eye, write_cube_views

H, W = 16, 24  # non-square: a focal taken from the height, or rows and columns swapped, show
ANGLE = 0.9
POSES = [look_at_origin(orbit_eye(0.4, 0.5, 2.6)), look_at_origin(orbit_eye(2.2, 0.9, 3.0))]
runner = CliRunner()


def _focal(width: int, angle: float = ANGLE) -> float:
    return 0.5 * width / math.tan(0.5 * angle)


def _png(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), np.float64) / 255.0


@pytest.fixture()
def cube_shard(tmp_path):
    records = [
        NerfRecord("cube", "chair", "test", SPEC, "init:none", cube_params()),
        NerfRecord("other", "table", "test", SPEC, "init:none", cube_params()),
    ]
    return write_nerf_shard(tmp_path / "nerfs" / "cube.h5", records)


def test_expected_images_are_not_symmetric():
    """The cameras look down on the cube from above: a vertically flipped render differs."""
    want, _ = cube_image(POSES[0], H, W, _focal(W))
    assert np.abs(want - want[::-1]).max() > 0.1
    assert np.abs(want - want[:, ::-1]).max() > 0.1
    assert 0.05 < (want.sum(-1) > 0).mean() < 0.95  # the cube and some background are in view


def test_library_render_matches_the_closed_form():
    imgs = render_views(SPEC, cube_params(), np.stack(POSES), H, W, _focal(W), n_samples=64, grid_res=8)
    assert imgs.shape == (2, H, W, 3)
    for img, pose in zip(imgs, POSES, strict=True):
        want, _ = cube_image(pose, H, W, _focal(W))
        np.testing.assert_allclose(img, want, atol=2e-4)


def test_render_command_with_dataset_cameras(tmp_path, cube_shard):
    root = tmp_path / "data"
    write_cube_views(root / "03001627" / "cube", POSES, H, W, ANGLE)
    obj = load_object(root / "03001627" / "cube")
    assert (obj.width, obj.height) == (W, H)
    assert obj.focal == pytest.approx(_focal(W))  # from the width, not the height
    out = tmp_path / "views"
    result = runner.invoke(app, ["render", str(cube_shard), "--out", str(out), "--cameras", "dataset", "--dataset",
                                 str(root), "--object", "chair/cube", "--views", "2", "--samples", "64",
                                 "--grid-res", "8", "--no-progress"])
    assert result.exit_code == 0, result.output
    psnr = float(result.output.split("PSNR vs ground truth ")[1].split(" dB")[0])
    assert psnr > 40
    canvas = _png(out / "cube" / "chair" / "cube.png")
    assert canvas.shape == (2 * H + 2, 2 * W + 2, 3)  # rows of ground truth | render
    for k, pose in enumerate(POSES):
        render = canvas[k * (H + 2) : k * (H + 2) + H, W + 2 :]
        want, _ = cube_image(pose, H, W, _focal(W))
        np.testing.assert_allclose(render, want, atol=1.5 / 255)


def test_render_command_turntable(tmp_path, cube_shard):
    out = tmp_path / "views"
    n, res, elev, dist, fov = 3, 20, 35.0, 3.0, 0.9
    result = runner.invoke(app, ["render", str(cube_shard), "--out", str(out), "--turntable", str(n),
                                 "--resolution", str(res), "--elevation", str(elev), "--distance", str(dist),
                                 "--fov", str(fov), "--samples", "64", "--grid-res", "8", "--object", "cube",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    canvas = _png(out / "cube" / "chair" / "cube.png")
    assert canvas.shape == (res, n * res + 2 * (n - 1), 3)
    focal = 0.5 * res / math.tan(0.5 * fov)  # the horizontal field of view: tan(fov / 2)
    for k in range(n):
        pose = look_at_origin(orbit_eye(2 * math.pi * k / n, math.radians(elev), dist))
        want, _ = cube_image(pose, res, res, focal)
        np.testing.assert_allclose(canvas[:, k * (res + 2) : k * (res + 2) + res], want, atol=1.5 / 255)


def test_render_command_with_a_cameras_file_and_ground_truth(tmp_path, cube_shard):
    scene = tmp_path / "scene"
    write_cube_views(scene, POSES, H, W, ANGLE, name="transforms_test.json", subdir="test")
    cams = load_cameras(scene / "transforms_test.json")
    assert (cams.width, cams.height) == (W, H) and cams.focal == pytest.approx(_focal(W))
    out = tmp_path / "views"
    result = runner.invoke(app, ["render", str(cube_shard), "--out", str(out), "--cameras",
                                 str(scene / "transforms_test.json"), "--object", "chair/cube", "--samples", "64",
                                 "--grid-res", "8", "--no-progress"])
    assert result.exit_code == 0, result.output
    folder = out / "cube" / "chair" / "cube"
    pngs = sorted(folder.glob("*.png"))
    assert [p.name for p in pngs] == ["000_r_0.png", "001_r_1.png"]
    for png, pose in zip(pngs, POSES, strict=True):
        want, _ = cube_image(pose, H, W, _focal(W))
        np.testing.assert_allclose(_png(png), want, atol=1.5 / 255)
    report = json.loads((folder / "psnr.json").read_text())
    assert [v["name"] for v in report["views"]] == ["r_0", "r_1"]
    assert all(v["psnr"] > 40 for v in report["views"]) and report["psnr"] > 40
    assert "PSNR per view (dB):" in result.output
    assert not (out / "cube" / "table").exists()  # --object picked one NeRF


def test_cameras_file_without_images_uses_w_h_and_fl_x(tmp_path, cube_shard):
    fl_x = 19.0
    meta = {"camera_angle_x": 0.1, "w": W, "h": H, "fl_x": fl_x,  # fl_x wins over the angle
            "frames": [{"file_path": "./missing/r_0", "transform_matrix": POSES[1].tolist()}]}
    (tmp_path / "cams.json").write_text(json.dumps(meta))
    out = tmp_path / "views"
    result = runner.invoke(app, ["render", str(cube_shard), "--out", str(out), "--cameras", str(tmp_path / "cams.json"),
                                 "--object", "table/other", "--samples", "64", "--grid-res", "8", "--no-progress"])
    assert result.exit_code == 0, result.output
    (png,) = (out / "cube" / "table" / "other").glob("*.png")
    want, _ = cube_image(POSES[1], H, W, fl_x)
    np.testing.assert_allclose(_png(png), want, atol=1.5 / 255)
    assert not (out / "cube" / "table" / "other" / "psnr.json").exists()


def test_render_refuses_unknown_objects_and_camera_files(tmp_path, cube_shard):
    result = runner.invoke(app, ["render", str(cube_shard), "--out", str(tmp_path / "v"), "--object", "lamp/nope"])
    assert result.exit_code == 1 and "lamp/nope" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["render", str(cube_shard), "--out", str(tmp_path / "v"), "--cameras", "nope.json"])
    assert result.exit_code == 1 and "nope.json" in result.output
    (tmp_path / "bad.json").write_text(json.dumps({"camera_angle_x": 0.5, "frames": [{"transform_matrix": POSES[0].tolist()}]}))
    result = runner.invoke(app, ["render", str(cube_shard), "--out", str(tmp_path / "v"), "--cameras", str(tmp_path / "bad.json")])
    assert result.exit_code == 1 and "image size" in result.output
