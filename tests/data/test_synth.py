"""The generated dataset: layout, cameras consistent with the images, splits, determinism."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from nfkit.data.cameras import camera_rays, project_points
from nfkit.data.classes import SYNSET_TO_NAME
from nfkit.data.multiview import load_object, scan_dataset
from nfkit.data.synth import SynthConfig, generate_dataset, split_indices


def _meta(entry):
    return json.loads((entry.path / "meta.json").read_text())


def test_layout_matches_shapenetrender(synth_root):
    info = json.loads((synth_root / "dataset.json").read_text())
    assert info["format"] == "nfkit-synth" and info["version"] == 1
    assert (
        info["config"]["resolution"] == 64
        and info["config"]["views"] == 8
        and info["config"]["seed"] == 3
    )
    assert info["n_objects"] == 26 and set(info["classes"]) == set(SYNSET_TO_NAME)
    for synset in SYNSET_TO_NAME:
        objects = sorted(p.name for p in (synth_root / synset).iterdir())
        assert len(objects) == 2
        obj = synth_root / synset / objects[0]
        transforms = json.loads((obj / "transforms_train.json").read_text())
        assert transforms["camera_angle_x"] == pytest.approx(0.8)
        assert [f["file_path"] for f in transforms["frames"]] == [
            f"./train/{i:02d}" for i in range(8)
        ]
        with Image.open(obj / "train" / "07.png") as im:
            assert im.mode == "RGBA" and im.size == (64, 64)


def test_every_class_present_and_split_lists_cover_all_objects(synth_root):
    entries = scan_dataset(synth_root)
    assert len(entries) == 26
    assert {e.class_name for e in entries} == set(SYNSET_TO_NAME.values())
    listed = []
    for split in ("train", "val", "test"):
        lines = (synth_root / "splits" / f"{split}.txt").read_text().split()
        listed += lines
    assert sorted(listed) == sorted(f"{e.path.parent.name}/{e.object_id}" for e in entries)
    assert len(set(listed)) == len(listed)  # each object in exactly one split
    for name in SYNSET_TO_NAME.values():  # train is never empty, even with 2 objects per class
        assert any(e.split == "train" and e.class_name == name for e in entries)


def test_object_centre_projects_onto_the_mask_in_every_view(synth_root):
    for entry in scan_dataset(synth_root):
        obj = load_object(entry)
        point = torch.tensor([_meta(entry)["interior_point"]], dtype=torch.float64)
        uv, depth = project_points(
            point, torch.from_numpy(obj.c2w).double(), obj.height, obj.width, obj.focal
        )
        assert torch.all(depth > 0)
        alpha = obj.images[..., 3]
        for v in range(len(alpha)):
            col, row = (int(x) for x in torch.floor(uv[v, 0]))
            window = alpha[v, max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2]
            assert window.max() > 0.5, f"{entry.object_id} view {v}: interior point off the mask"


def test_rays_through_the_mask_hit_the_bounding_box(synth_root):
    for entry in scan_dataset(synth_root)[::3]:
        obj = load_object(entry)
        meta = _meta(entry)
        lo, hi = np.array(meta["bbox_min"]), np.array(meta["bbox_max"])
        assert np.all(lo >= -0.7) and np.all(hi <= 0.7)
        origins, dirs = camera_rays(
            torch.from_numpy(obj.c2w).double(), obj.height, obj.width, obj.focal
        )
        mask = obj.images[..., 3] == 1.0
        assert set(np.unique(obj.images[..., 3])) == {0.0, 1.0}  # alpha is an exact mask
        o, d = origins.numpy()[mask], dirs.numpy()[mask]
        with np.errstate(divide="ignore"):
            t1, t2 = (lo - o) / d, (hi - o) / d
        t_near = np.minimum(t1, t2).max(axis=1)
        t_far = np.maximum(t1, t2).min(axis=1)
        assert np.all(t_near <= t_far + 1e-6) and np.all(t_far > 0)
        # and the object never touches the image border (never cut off)
        assert not mask[:, 0, :].any() and not mask[:, -1, :].any()
        assert not mask[:, :, 0].any() and not mask[:, :, -1].any()


def test_cameras_follow_the_protocol(synth_root):
    obj = load_object(scan_dataset(synth_root)[0])
    centres = obj.c2w[:, :3, 3]
    assert np.all(centres[:, 1] > 0)  # upper hemisphere
    azimuth = np.unwrap(np.arctan2(centres[:, 0], centres[:, 2]))
    assert np.all(np.diff(azimuth) > 0)  # one turn around the vertical axis
    assert 2 * np.pi * 0.6 < azimuth[-1] - azimuth[0] < 2 * np.pi
    forward = -obj.c2w[:, :3, 2]
    to_origin = -centres / np.linalg.norm(centres, axis=1, keepdims=True)
    assert np.allclose(forward, to_origin, atol=1e-5)  # looking at the origin
    assert len(np.unique(np.round(np.linalg.norm(centres, axis=1), 4))) == len(
        centres
    )  # random distance


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    cfg = dict(resolution=24, objects_per_class=2, views=3, classes=("chair", "lamp"), augment=1)
    paths = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate_dataset(tmp_path / name, SynthConfig(seed=seed, **cfg))
        paths.append(tmp_path / name)

    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    a, b, c = (files(p) for p in paths)
    assert a == b
    assert a.keys() == c.keys()
    assert any(a[k] != c[k] for k in a if k.suffix == ".png")
    # augmented copies are listed in the same split as their source
    split_of = {}
    for split in ("train", "val", "test"):
        for line in (paths[0] / "splits" / f"{split}.txt").read_text().split():
            split_of[line] = split
    augmented = [k for k in split_of if k.endswith("_A1")]
    assert len(augmented) == 4
    assert all(split_of[k] == split_of[k[: -len("_A1")]] for k in augmented)


def test_split_indices_keep_train_non_empty():
    rng = np.random.default_rng(0)
    assert split_indices(1, rng, 0.4, 0.4) == {"test": [], "val": [], "train": [0]}
    parts = split_indices(10, rng, 0.2, 0.1)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [7, 2, 1]
    assert sorted(sum(parts.values(), [])) == list(range(10))


def test_existing_output_and_overwrite(tmp_path):
    cfg = SynthConfig(resolution=16, objects_per_class=1, views=2, classes=("phone",))
    out = tmp_path / "ds"
    generate_dataset(out, cfg)
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate_dataset(out, cfg)
    summary = generate_dataset(out, cfg, overwrite=True, preview=tmp_path / "sheet.png")
    assert summary.n_objects == 1 and (out / "dataset.json").is_file()
    assert not list(tmp_path.glob(".ds*"))  # no leftover temporary folders
    with Image.open(tmp_path / "sheet.png") as im:
        assert im.size[1] >= 16
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a dataset written by nfkit synth"):
        generate_dataset(other, cfg, overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"
