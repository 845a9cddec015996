"""Which views the held-out PSNR is measured on, and split labels from ``splits/*.txt`` to the
NeRF and graph artifacts."""

from __future__ import annotations

import dataclasses
import math

import pytest

from nfkit.data.synth import SynthConfig, generate_dataset
from nfkit.fit.config import PRESETS
from nfkit.fit.driver import fit_dataset
from nfkit.fit.trainer import FitResult, evaluate_params
from nfkit.graphs.convert import build_graphs
from nfkit.graphs.store import GraphDataset
from nfkit.nerf.store import iter_nerfs

from ..analytic import SPEC, cube_params, look_at_origin, orbit_eye, write_cube_views

CONFIG = dataclasses.replace(PRESETS["tiny"], steps=1, rays=16, samples=48, grid_res=8, resolution=0,
                             eval_every=2, batch_nerfs=2, max_views=0)


def _cube_fit(spec, init, scenes, config, **kw):
    """Stands in for fitting: every NeRF is the analytic cube, evaluated on the scene's
    held-out rays by the trainer's own evaluation."""
    params = [cube_params()] * len(scenes)
    psnrs = evaluate_params(SPEC, params, scenes, config)
    return [FitResult(s.key, p, q, 0.0, 0.0) for s, p, q in zip(scenes, params, psnrs, strict=True)]


def _blackout(folder, views, name="train"):
    """Make views' ground truth empty (alpha 0): a NeRF evaluated on them scores badly."""
    from PIL import Image

    for v in views:
        with Image.open(folder / name / f"r_{v}.png") as im:
            size = im.size
        Image.new("RGBA", size, (0, 0, 0, 0)).save(folder / name / f"r_{v}.png")


@pytest.fixture()
def cube_dataset(tmp_path):
    """chair/heldout: only training views 0, 2 show the cube (1, 3 are empty), no test file.
    chair/withtest: every training view empty, transforms_test.json views show the cube."""
    root = tmp_path / "data"
    poses = [look_at_origin(orbit_eye(0.5 + 1.4 * k, 0.6, 2.8)) for k in range(4)]
    held = root / "03001627" / "heldout"
    write_cube_views(held, poses, 12, 16, 0.9)
    _blackout(held, [1, 3])
    test = root / "03001627" / "withtest"
    write_cube_views(test, poses, 12, 16, 0.9)
    _blackout(test, range(4))
    write_cube_views(test, poses[:2], 12, 16, 0.9, name="transforms_test.json", subdir="test")
    return root


def test_heldout_psnr_uses_the_heldout_views(cube_dataset, tmp_path):
    summary = fit_dataset(cube_dataset, tmp_path / "nerfs", [SPEC], CONFIG, fit_fn=_cube_fit)
    recs = {r.object_id: r for r in iter_nerfs(tmp_path / "nerfs" / SPEC.name, load_params=False)}
    # the cube is exactly right on the views it is evaluated on, and wrong on all the others
    assert recs["heldout"].psnr_on == "held-out-train-views" and recs["heldout"].psnr > 35
    assert recs["withtest"].psnr_on == "test-views" and recs["withtest"].psnr > 35
    assert summary.archs[SPEC.name].psnr_on == {"held-out-train-views": 1, "test-views": 1}


def test_training_views_are_not_the_heldout_views(cube_dataset, tmp_path):
    """With the roles swapped (the held-out views empty), the same NeRF scores badly."""
    _blackout(cube_dataset / "03001627" / "heldout", [0, 2])
    _blackout(cube_dataset / "03001627" / "withtest", [0, 1], name="test")
    from PIL import Image

    for v in (1, 3):  # the training views now show the cube
        with Image.open(cube_dataset / "03001627" / "withtest" / "test" / "r_0.png") as im:
            im.save(cube_dataset / "03001627" / "heldout" / "train" / f"r_{v}.png")
    fit_dataset(cube_dataset, tmp_path / "nerfs", [SPEC], CONFIG, fit_fn=_cube_fit)
    recs = {r.object_id: r for r in iter_nerfs(tmp_path / "nerfs" / SPEC.name, load_params=False)}
    assert recs["heldout"].psnr < 20 and recs["withtest"].psnr < 20


def test_no_evaluation_records_none(cube_dataset, tmp_path):
    fit_dataset(cube_dataset, tmp_path / "nerfs", [SPEC], dataclasses.replace(CONFIG, eval_every=0), fit_fn=_cube_fit)
    recs = list(iter_nerfs(tmp_path / "nerfs" / SPEC.name, load_params=False))
    assert all(r.psnr_on == "" and math.isnan(r.psnr) for r in recs)


def _split_lists(root) -> dict[str, str]:
    out = {}
    for file in (root / "splits").glob("*.txt"):
        for line in file.read_text().split():
            out[line] = file.stem
    return out


def _init_fit(spec, init, scenes, config, **kw):
    return [FitResult(s.key, dict(init), math.nan, 0.0, 0.0) for s in scenes]


def test_split_labels_reach_the_nerf_and_graph_artifacts(tmp_path):
    root = tmp_path / "data"
    generate_dataset(root, SynthConfig(resolution=8, objects_per_class=5, views=2, classes=("chair", "lamp"),
                                       val_fraction=0.2, test_fraction=0.2, seed=1))
    lists = _split_lists(root)
    assert set(lists.values()) == {"train", "val", "test"}
    spec = dataclasses.replace(SPEC, name="tiny-mlp")
    fit_dataset(root, tmp_path / "nerfs", [spec], CONFIG, fit_fn=_init_fit)
    from nfkit.data.classes import NAME_TO_SYNSET

    recs = list(iter_nerfs(tmp_path / "nerfs", load_params=False))
    assert len(recs) == 10
    want = {r.key: lists[f"{NAME_TO_SYNSET[r.class_name]}/{r.object_id}"] for r in recs}
    assert {r.key: r.split for r in recs} == want
    results = list(build_graphs([tmp_path / "nerfs"], tmp_path / "graphs"))
    assert results and all(r.status == "built" for r in results), results
    ds = GraphDataset(tmp_path / "graphs")
    metas = [ds.meta(k) for k in range(len(ds))]
    assert {f"{m.class_name}/{m.object_id}": m.split for m in metas} == want
