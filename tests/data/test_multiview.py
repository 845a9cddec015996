"""The loader on NeRF-synthetic scenes, ShapenetRender-style trees and broken inputs."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from nfkit.data.multiview import (
    MultiViewObject,
    ObjectEntry,
    check_dataset,
    downscale,
    load_object,
    scan_dataset,
)
from nfkit.errors import UserError

from .conftest import write_scene


def test_nerf_synthetic_scene_without_extension(tmp_path):
    meta = write_scene(tmp_path / "lego", n_views=5, size=16)
    obj = load_object(tmp_path / "lego")
    assert isinstance(obj, MultiViewObject)
    assert obj.images.shape == (5, 16, 16, 4) and obj.images.dtype == np.float32
    assert obj.c2w.shape == (5, 4, 4) and obj.c2w.dtype == np.float32
    assert obj.focal == pytest.approx(0.5 * 16 / np.tan(0.5 * meta["camera_angle_x"]))
    assert np.allclose(
        obj.c2w, np.array([f["transform_matrix"] for f in meta["frames"]]), atol=1e-6
    )
    with Image.open(tmp_path / "lego" / "train" / "r_3.png") as im:
        assert np.allclose(obj.images[3], np.asarray(im, np.float32) / 255.0)
    assert (obj.width, obj.height, obj.object_id, obj.split) == (16, 16, "lego", "train")
    # the other transforms files are readable too
    test_views = load_object(tmp_path / "lego", transforms="test")
    assert not np.allclose(test_views.images, obj.images)


def test_file_path_with_extension_and_rgb_images(tmp_path):
    write_scene(tmp_path / "obj", n_views=2, size=8, extension=True)
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "obj" / "train" / "r_1.png")
    obj = load_object(tmp_path / "obj")
    assert np.all(obj.images[1, ..., 3] == 1.0)  # no alpha channel: fully opaque
    assert np.allclose(obj.images[1, ..., :3], [1.0, 0.0, 0.0])


def test_scan_dataset_tree_class_folder_and_single_object(tmp_path):
    root = tmp_path / "shapenet"
    for synset, ids in (("03001627", ["b", "a"]), ("02691156", ["z"]), ("custom", ["q"])):
        for oid in ids:
            write_scene(root / synset / oid, n_views=1, size=4)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("03001627/a\n02691156/z\n# comment\n")
    (root / "splits" / "test.txt").write_text("03001627/b\n")
    entries = scan_dataset(root)
    assert [(e.class_name, e.object_id, e.split) for e in entries] == [
        ("airplane", "z", "train"),
        ("chair", "a", "train"),
        ("chair", "b", "test"),
        ("custom", "q", "unlisted"),
    ]
    assert all(isinstance(e, ObjectEntry) for e in entries)
    assert [e.object_id for e in scan_dataset(root, classes=["chair"])] == ["a", "b"]
    assert [e.object_id for e in scan_dataset(root, classes=["02691156", "custom"])] == ["z", "q"]
    assert [e.object_id for e in scan_dataset(root, split="test")] == ["b"]
    with pytest.raises(ValueError, match="classes present: airplane, chair, custom"):
        scan_dataset(root, classes=["lamp"])
    with pytest.raises(ValueError, match="no objects in split 'val'"):
        scan_dataset(root, split="val")
    # a class folder and a single object folder
    assert [e.object_id for e in scan_dataset(root / "03001627")] == ["a", "b"]
    single = scan_dataset(root / "03001627" / "b")
    assert [(e.class_name, e.object_id, e.split) for e in single] == [("chair", "b", "test")]


def test_generated_dataset_is_read_back(synth_root):
    entries = scan_dataset(synth_root, classes=["lamp"])
    obj = load_object(entries[0], max_views=3, resolution=32)
    assert obj.images.shape == (3, 32, 32, 4) and obj.class_name == "lamp"
    full = load_object(entries[0])
    assert obj.focal == pytest.approx(full.focal / 2)
    assert np.allclose(obj.c2w, full.c2w[[0, 4, 7]])  # evenly spaced views
    # area filter: alpha is the coverage of each 2x2 block, colours are premultiplied averages
    block = full.images[4].reshape(32, 2, 32, 2, 4)
    alpha = block[..., 3].mean(axis=(1, 3))
    assert np.allclose(obj.images[1, ..., 3], alpha, atol=1e-5)
    premult = (block[..., :3] * block[..., 3:]).mean(axis=(1, 3))
    covered = alpha > 0
    assert np.allclose(
        obj.images[1][covered][:, :3], premult[covered] / alpha[covered][:, None], atol=1e-5
    )
    report = check_dataset(synth_root, classes=["lamp", "car"])
    assert report.n_objects == 4 and report.sizes == [(64, 64)] and report.views == (8, 8)


def test_downscale_keeps_uniform_colours():
    image = np.zeros((6, 6, 4), np.float32)
    image[:3, :, :] = [0.2, 0.4, 0.6, 1.0]  # top half opaque, bottom transparent
    small = downscale(image, 3, 3)
    assert np.allclose(
        small[0, :, :3], [0.2, 0.4, 0.6], atol=1e-6
    )  # no bleeding of the black background
    assert np.allclose(small[1, :, 3], 0.5) and np.allclose(small[2, :, 3], 0.0)


def test_broken_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        scan_dataset(tmp_path / "missing")
    (tmp_path / "empty" / "cls" / "obj").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no transforms"):
        scan_dataset(tmp_path / "empty")
    obj = tmp_path / "scene"
    write_scene(obj, n_views=3, size=8)
    png = obj / "train" / "r_1.png"
    png.write_bytes(png.read_bytes()[:60])  # truncated
    with pytest.raises(UserError, match="r_1.png"):
        load_object(obj)
    (obj / "train" / "r_1.png").unlink()
    with pytest.raises(FileNotFoundError, match="r_1"):
        load_object(obj)
    shutil.copy(obj / "train" / "r_0.png", obj / "train" / "r_1.png")
    meta = json.loads((obj / "transforms_train.json").read_text())
    meta["frames"][2]["transform_matrix"] = [[1, 0], [0, 1]]
    (obj / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="frame 2"):
        load_object(obj)
    (obj / "transforms_train.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        load_object(obj)
    with pytest.raises(ValueError, match="resolution"):
        load_object(tmp_path / "scene", transforms="val", resolution=64)


def test_shrink_only_keeps_small_images_at_their_size(synth_root):
    entry = scan_dataset(synth_root, classes=["lamp"])[0]
    with pytest.raises(ValueError, match="resolution must be between"):
        load_object(entry, max_views=1, resolution=128)
    native = load_object(entry, max_views=1, resolution=128, shrink_only=True)
    assert native.width == 64 and native.images.shape == (1, 64, 64, 4)
    smaller = load_object(entry, max_views=1, resolution=32, shrink_only=True)
    assert smaller.width == 32
