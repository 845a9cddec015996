"""One CliRunner test that chains every stage on a tiny config, as a user would."""

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.graphs.store import GraphShard, find_graph_shards
from nfkit.nerf.store import iter_nerfs

runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"nfkit {' '.join(map(str, args))}\n{result.output}"
    return result


def test_every_stage_chains_on_a_tiny_dataset(tmp_path):
    data, nerfs, graphs, views = (tmp_path / n for n in ("data", "nerfs", "graphs", "views"))
    _ok(["synth", data, "--classes", "chair,airplane", "--objects-per-class", "1", "--views", "6",
         "--resolution", "16", "--preview", tmp_path / "sheet.png"])
    assert Image.open(tmp_path / "sheet.png").size[0] > 16
    _ok(["check-data", data])
    _ok(["fit-nerfs", data, "--arch", "mlp", "--arch", "tri", "--arch", "hash", "--preset", "tiny",
         "--out", nerfs, "--no-progress"])
    records = list(iter_nerfs(nerfs / "mlp", load_params=False)) + list(
        iter_nerfs(nerfs / "tri", load_params=False)) + list(iter_nerfs(nerfs / "hash", load_params=False))
    assert sorted((r.arch.name, r.class_name) for r in records) == [
        ("hash", "airplane"), ("hash", "chair"), ("mlp", "airplane"), ("mlp", "chair"),
        ("tri", "airplane"), ("tri", "chair"),
    ]
    assert all(np.isfinite(r.psnr) for r in records)
    # all NeRFs of one architecture come from the same shared init
    assert len({r.init_fingerprint for r in records if r.arch.name == "tri"}) == 1

    _ok(["render", nerfs, "--turntable", "2", "--resolution", "16", "--limit", "2", "--out", views,
         "--no-progress"])
    assert len(list(views.rglob("*.png"))) >= 2

    out = _ok(["build-graphs", nerfs, "--out", graphs, "--stats", "--no-progress"]).output
    assert "mlp" in out and "hash" in out
    shards = find_graph_shards(graphs)
    assert sum(len(GraphShard(p)) for p in shards) == 6
