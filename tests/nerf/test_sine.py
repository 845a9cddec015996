"""The sine a NeRF's weights were trained with travels with it: imports from tiny-cuda-nn are
``tcnn``, nfkit fits and old shards ``exact``; render, evaluation, resume and graph metadata
use it; exports to tcnn say when they are not exact; HASH-3N's per-level scale on import."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.fit.driver import completed_keys
from nfkit.fit.trainer import TorchBatchedNerfs
from nfkit.graphs.convert import build_graph_shard
from nfkit.io.artifacts import ArtifactError, read_header
from nfkit.nerf import field, interop
from nfkit.nerf.specs import ArchSpec, get_arch
from nfkit.nerf.store import (
    NerfRecord,
    iter_nerfs,
    read_nerf_shard,
    read_shard_spec,
    shard_sine,
    write_nerf_shard,
)
from nfkit.render.rays import turntable_cameras
from nfkit.render.views import _to_u8, render_nerfs, render_views

from .test_import_nerfs import _write_reference_tree

runner = CliRunner()
# high frequencies (2^f·π up to 2^23·π) where tcnn's fast sine and the exact one disagree
HIGH = ArchSpec("high", "mlp", hidden_layers=1, hidden_dim=8, freq_bands=24)


def _high_params(seed: int = 0) -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    p = {k: torch.randn(s, generator=g).numpy() * 0.6 for k, s in HIGH.param_shapes().items()}
    p["mlp.1"][3] += 3.0  # dense enough to see
    return p


def _imported_shard(tmp_path):
    root = tmp_path / "ref" / "high"
    folder = root / "03001627" / "c1"
    folder.mkdir(parents=True)
    torch.save(interop.canonical_to_reference(HIGH, _high_params(), sin="tcnn"), folder / "nerf_weights.pth")
    report = interop.import_reference_nerfs(root, HIGH, tmp_path / "nerfs")
    return report.shards[0]


def test_the_two_sines_are_different_functions():
    x = torch.rand(1, 500, 3, generator=torch.Generator().manual_seed(1)) * 1.3 - 0.65
    params = {k: torch.tensor(v)[None] for k, v in _high_params().items()}
    exact, _ = field.forward(HIGH, params, x, sin="exact")
    fast, _ = field.forward(HIGH, params, x, sin="tcnn")
    assert (exact - fast).abs().max() > 0.05


def test_imports_record_tcnn_and_render_with_it(tmp_path):
    shard = _imported_shard(tmp_path)
    (rec,) = read_nerf_shard(shard)
    assert rec.sin == "tcnn" and shard_sine(shard) == "tcnn"
    (result,) = render_nerfs([shard], tmp_path / "views", cameras="turntable", turntable=1, resolution=12, n_samples=32, grid_res=8)
    with Image.open(result.path) as im:
        png = np.asarray(im.convert("RGB"))
    c2w = turntable_cameras(1, 30.0, 3.4)
    focal = 0.5 * 12 / np.tan(0.4)
    want = _to_u8(render_views(HIGH, rec.params, c2w, 12, 12, focal, 32, 8, sin="tcnn")[0])
    wrong = _to_u8(render_views(HIGH, rec.params, c2w, 12, 12, focal, 32, 8, sin="exact")[0])
    assert np.abs(want.astype(int) - wrong).max() > 10  # the test can tell the two apart
    np.testing.assert_array_equal(png, want)


def test_graphs_and_evaluation_use_the_recorded_sine(tmp_path):
    shard = _imported_shard(tmp_path)
    graph = build_graph_shard(shard, tmp_path / "graphs" / "g.h5").output
    assert read_header(graph)["config"]["sin"] == "tcnn"
    (rec,) = read_nerf_shard(shard)
    model = TorchBatchedNerfs(HIGH, [rec.params], "cpu", sin=rec.sin)
    x = torch.rand(1, 200, 3, generator=torch.Generator().manual_seed(2)) - 0.5
    want, _ = field.forward(HIGH, {k: torch.tensor(v)[None] for k, v in rec.params.items()}, x, sin="tcnn")
    torch.testing.assert_close(model.field(x)[0], want)
    with pytest.raises(ValueError, match="fast sine"):  # a fit run does not resume into imported NeRFs
        completed_keys(shard.parent, HIGH, rec.init_fingerprint)


def test_fits_and_old_shards_are_exact(tmp_path):
    rec = NerfRecord("o", "chair", "train", HIGH, "init:x", _high_params())
    path = write_nerf_shard(tmp_path / "s.h5", [rec])
    assert shard_sine(path) == "exact"
    with h5py.File(path, "a") as f:  # a shard written before the attribute existed
        del f.attrs["sin"]
    assert shard_sine(path) == "exact" and read_nerf_shard(path)[0].sin == "exact"
    tcnn = NerfRecord("p", "chair", "train", HIGH, "init:x", _high_params(), sin="tcnn")
    with pytest.raises(ValueError, match="one sine"):
        write_nerf_shard(tmp_path / "mixed.h5", [rec, tcnn])
    with h5py.File(path, "a") as f:
        f.attrs["sin"] = "fast"
    with pytest.raises(ArtifactError, match="unknown sine .fast."):
        read_nerf_shard(path)


def test_export_of_an_exact_fit_to_tcnn_says_it_is_not_exact(caplog):
    with caplog.at_level(logging.WARNING, logger="nfkit.nerf.interop"):
        interop.canonical_to_reference(HIGH, _high_params(), sin="exact")
    assert "NOT the same function" in caplog.text
    caplog.clear()
    hash_spec = get_arch("hash")
    params = {k: np.zeros(s, np.float32) for k, s in hash_spec.param_shapes().items()}
    with caplog.at_level(logging.WARNING, logger="nfkit.nerf.interop"):
        interop.canonical_to_reference(hash_spec, params, sin="exact")
        interop.canonical_to_reference(HIGH, _high_params(), sin="tcnn")
    assert caplog.text == ""
    assert not interop.export_is_exact(get_arch("tri"), "exact") and interop.export_is_exact(hash_spec, "exact")


def test_import_takes_the_hash_3n_per_level_scale(tmp_path):
    scale = 2.8284271247461903
    wide = interop.with_per_level_scale(get_arch("hash-3n"), scale)
    assert wide.hash_level_resolutions() == [16, 46, 128] and wide.n_params() == get_arch("hash-3n").n_params()
    root, truth = _write_reference_tree(tmp_path, wide, "hash3n", seeds=range(2))
    out = tmp_path / "nerfs"
    result = runner.invoke(app, ["import-nerfs", str(root), "--arch", "hash-3n", "--per-level-scale", str(scale),
                                 "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "per-level scale: 2.82843" in result.output
    stored, _, _ = read_shard_spec(next(out.glob("*.h5")))
    assert stored.hash_per_level_scale == scale and stored.hash_level_resolutions() == [16, 46, 128]
    rec = next(iter_nerfs(out))
    assert rec.sin == "tcnn" and read_header(rec.shard)["config"]["hash_per_level_scale"] == scale
    default = runner.invoke(app, ["import-nerfs", str(root), "--arch", "hash-3n", "--out", str(tmp_path / "n2"), "--no-progress"])
    assert default.exit_code == 0 and read_shard_spec(next((tmp_path / "n2").glob("*.h5")))[0].hash_per_level_scale == 2.0
    bad = runner.invoke(app, ["import-nerfs", str(root), "--arch", "mlp", "--per-level-scale", "2", "--out", str(out)])
    assert bad.exit_code == 1 and "hash architectures only" in bad.output and len(bad.output.strip().splitlines()) == 1
