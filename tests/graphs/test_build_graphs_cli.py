"""``nfkit build-graphs`` through Typer's CliRunner."""

import json
import os
import shutil

import h5py
import numpy as np
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.graphs.store import GraphShard
from nfkit.io.artifacts import write_artifact
from nfkit.nerf.specs import ArchSpec
from nfkit.nerf.store import NerfRecord, write_nerf_shard

from .test_graph_roundtrip import assert_same_params, random_params

MLP = ArchSpec("small-mlp", "mlp", hidden_layers=2, hidden_dim=16, freq_bands=2)
TRI = ArchSpec(
    "small-tri",
    "tri",
    hidden_layers=2,
    hidden_dim=16,
    freq_bands=1,
    tri_res=4,
    tri_channels=4,
    activation="sine",
)


def _shard(path, spec, n=3, seed=0):
    recs = [
        NerfRecord(f"obj{i}", "chair", "train", spec, "a" * 16, random_params(spec, seed=seed + i))
        for i in range(n)
    ]
    write_nerf_shard(path, recs)
    return recs


def _tree(tmp_path):
    nerfs = tmp_path / "nerfs"
    recs = {
        "mlp": _shard(nerfs / "mlp" / "s0.h5", MLP),
        "tri": _shard(nerfs / "tri" / "s0.h5", TRI, n=2),
    }
    good = (nerfs / "mlp" / "s0.h5").read_bytes()
    (nerfs / "broken").mkdir()
    (nerfs / "broken" / "truncated.h5").write_bytes(good[: len(good) // 3])
    _shard(nerfs / "broken" / "voxel.h5", MLP, n=1)
    with h5py.File(nerfs / "broken" / "voxel.h5", "r+") as f:
        f.attrs["arch_spec"] = json.dumps({"name": "vox", "family": "voxel"})
    # another kind of artifact living among the shards (as fit-nerfs' inits/ do): not an input
    with write_artifact(nerfs / "inits" / "other.h5", "graph-shard", 1) as f:
        f.attrs["count"] = 0
    return nerfs, recs


def test_bad_shards_are_reported_while_the_others_are_built(tmp_path):
    nerfs, recs = _tree(tmp_path)
    out = tmp_path / "graphs"
    result = CliRunner().invoke(
        app, ["build-graphs", str(nerfs), "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any("truncated.h5" in e and "corrupt" in e for e in errors)
    assert any("voxel.h5" in e and "unknown architecture family 'voxel'" in e for e in errors)
    assert "Traceback" not in result.output
    # the other artifact in the folder (an init) is skipped silently, neither built nor an error
    assert "built 5 graphs in 2 shard(s)" in result.stdout and "0 up to date" in result.stdout
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.h5")) == [
        "mlp/s0.h5",
        "tri/s0.h5",
    ]
    shard = GraphShard(out / "tri" / "s0.h5")
    assert [m.object_id for m in shard.meta] == ["obj0", "obj1"]
    assert shard.meta[1].source_row == 1 and shard.meta[1].arch == "small-tri"
    assert (
        shard.meta[1].arch_fingerprint == TRI.fingerprint()
        and shard.meta[1].init_fingerprint == "a" * 16
    )
    for i, rec in enumerate(recs["tri"]):
        assert_same_params(shard.params(i), rec.params)
    assert shard.nf2vec is None


def test_rerun_skips_complete_outputs_and_rebuilds_changed_ones(tmp_path):
    nerfs = tmp_path / "nerfs"
    _shard(nerfs / "a.h5", MLP)
    _shard(nerfs / "b.h5", TRI)
    out = tmp_path / "graphs"
    runner = CliRunner()
    args = [
        "build-graphs",
        str(nerfs / "a.h5"),
        str(nerfs / "b.h5"),
        "-o",
        str(out),
        "--no-progress",
    ]
    assert runner.invoke(app, args).exit_code == 0
    first = (out / "a.h5").stat().st_mtime_ns
    result = runner.invoke(app, args)
    assert (
        result.exit_code == 0
        and "built 0 graphs in 0 shard(s)" in result.stdout
        and "2 up to date" in result.stdout
    )
    assert (out / "a.h5").stat().st_mtime_ns == first
    _shard(nerfs / "a.h5", MLP, n=4, seed=9)  # the input changed
    os.utime(nerfs / "a.h5", ns=(first + 10**9, first + 10**9))
    result = runner.invoke(app, args)
    assert "built 4 graphs in 1 shard(s)" in result.stdout and len(GraphShard(out / "a.h5")) == 4
    assert "built 7 graphs" in runner.invoke(app, [*args, "--force"]).stdout
    # asking for nf2vec rows makes the existing outputs stale
    result = runner.invoke(app, [*args, "--nf2vec-width", "16"])
    assert result.exit_code == 0 and "built 7 graphs in 2 shard(s)" in result.stdout
    rows = GraphShard(out / "a.h5").nf2vec
    assert rows.shape[0] == 4 and rows.shape[2] == 16


def test_arch_filter_and_stats(tmp_path):
    nerfs, _ = _tree(tmp_path)
    shutil.rmtree(nerfs / "broken")
    out = tmp_path / "graphs"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "build-graphs",
            str(nerfs),
            "-o",
            str(out),
            "--arch",
            "small-tri",
            "--stats",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 filtered out by --arch" in result.stdout
    assert [p.relative_to(out).as_posix() for p in out.rglob("*.h5")] == ["tri/s0.h5"]
    assert "small-tri" in result.stdout and "small-mlp" not in result.stdout
    table = runner.invoke(app, ["build-graphs", "--stats", "--out", str(out)])
    assert table.exit_code == 0
    line = next(line for line in table.stdout.splitlines() if line.startswith("small-tri"))
    # MLP input: 4 channels + 6 frequencies, padded to 16 (6 constant-1 inputs = 6 bias nodes)
    nodes = 3 * 16 + 4 + 6 + 6 + 16 * 2 + 4
    edges = 3 * 16 * 4 + 16 * 16 + 16 * 16 + 16 * 4
    assert line.split()[:6] == ["small-tri", "tri", "1", "2", str(nodes), str(edges)]
    missing = runner.invoke(app, ["build-graphs", "--stats", "--out", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "no such graph folder" in missing.stderr
    # no NERFS: the workspace's nerfs/ folder is the default input
    nothing = runner.invoke(app, ["--workspace", str(tmp_path / "empty"), "build-graphs", "--out", str(out)])
    assert nothing.exit_code == 1 and "no NeRF folder in the workspace" in nothing.stderr


def test_same_relative_names_from_two_folders_are_refused(tmp_path):
    _shard(tmp_path / "x" / "s.h5", MLP, n=1)
    _shard(tmp_path / "y" / "s.h5", MLP, n=1)
    result = CliRunner().invoke(
        app, ["build-graphs", str(tmp_path / "x"), str(tmp_path / "y"), "-o", str(tmp_path / "g")]
    )
    assert result.exit_code == 1 and "would both be written" in result.stderr
    assert np.all([not p.exists() for p in (tmp_path / "g").rglob("*.h5")])


def test_a_foreign_artifact_named_explicitly_is_an_error(tmp_path):
    nerfs, _ = _tree(tmp_path)
    result = CliRunner().invoke(
        app, ["build-graphs", str(nerfs / "inits" / "other.h5"), "-o", str(tmp_path / "g")]
    )
    assert result.exit_code == 1
    assert "other.h5" in result.stderr and "expected 'nerf-shard'" in result.stderr
