"""The workspace: stages chain without paths, and ``nfkit status`` reports items and staleness."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
from PIL import Image
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.graphs.store import find_graph_shards
from nfkit.io.status import workspace_status
from nfkit.nerf.store import find_shards

runner = CliRunner()
FAST = ["--preset", "tiny", "--steps", "2", "--rays", "16", "--set", "samples=8", "--set", "grid_res=4",
        "--resolution", "16", "--no-progress"]


def _run(args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, f"nfkit {' '.join(map(str, args))}\n{result.output}"
    return result.output


def test_stages_chain_in_a_workspace_and_status_finds_stale_artifacts(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.chdir(ws)
    monkeypatch.delenv("NFKIT_WORKSPACE", raising=False)
    _run(["synth", "shapenet", "--classes", "chair", "--objects-per-class", "2", "--views", "4", "--resolution", "16"])
    # the mission's usage line, verbatim but for the speed options: no --out
    _run(["fit-nerfs", "shapenet/", "--arch", "mlp", *FAST])
    assert len(find_shards(ws / "nerfs" / "mlp")) == 1 and list((ws / "nerfs" / "inits").glob("*.h5"))
    # from elsewhere, through --workspace
    monkeypatch.chdir(tmp_path)
    _run(["--workspace", ws, "build-graphs", "--no-progress"])
    assert len(find_graph_shards(ws / "graphs")) == 1
    _run(["--workspace", ws, "render", "--turntable", "1", "--resolution", "8", "--samples", "8", "--no-progress"])
    assert len(list((ws / "views").rglob("*.png"))) == 2

    out = _run(["--workspace", ws, "status"])
    assert "no stale artifacts" in out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("      ")}
    assert "1 file(s)" in lines["nerf-shard"] and "2 item(s)" in lines["nerf-shard"]
    assert "2 item(s)" in lines["graph-shard"] and "nerf-init" in lines
    assert "2 .png file(s)" in out and "embeddings/" in out

    # an input image replaced with its size and mtime restored: the NeRF shard is stale
    image = sorted((ws / "shapenet").rglob("*.png"))[0]
    st = image.stat()
    pixels = np.asarray(Image.open(image)).copy()
    pixels[..., 0] = 255 - pixels[..., 0]
    Image.fromarray(pixels).save(image)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    out = _run(["status", ws], code=1)
    assert "stale: nerfs/mlp/shard-" in out and "input objects changed" in out
    assert "stale: graphs" not in out

    # a NeRF shard rewritten in place: its graph shard is stale
    (shard,) = find_shards(ws / "nerfs" / "mlp")
    with h5py.File(shard, "r+") as f:
        f["params/mlp.0"][0, 0, 0] += 1.0
    folders = {f.name: f for f in workspace_status(ws)}
    (graph,) = folders["graphs"].artifacts
    assert graph.state == "stale" and "nerf_shard" in graph.reason
    as_json = json.loads(_run(["status", ws, "--json", "--no-check"]))
    assert as_json["nerfs"]["artifacts"][0]["state"] == "unchecked"


def test_build_graphs_in_an_empty_workspace_names_the_folder(tmp_path):
    result = runner.invoke(app, ["--workspace", str(tmp_path), "build-graphs", "--no-progress"])
    assert result.exit_code == 1 and "nerfs" in result.output


def test_status_of_a_missing_workspace_is_one_line(tmp_path):
    result = runner.invoke(app, ["status", str(tmp_path / "nope")])
    assert result.exit_code == 1 and result.output.startswith("error:") and len(result.output.splitlines()) == 1


def test_status_knows_every_kind_in_a_fresh_process(tmp_path):
    """`nfkit status` must register the kinds itself (not rely on other imports of the process)."""
    import subprocess
    import sys

    from nfkit.nerf.init import get_or_create_init
    from nfkit.nerf.specs import get_arch

    get_or_create_init(get_arch("mlp"), tmp_path / "nerfs" / "inits")
    code = "import sys; from nfkit.cli import main; sys.argv = ['nfkit', 'status', sys.argv[1]]; main()"
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "nerf-init v1" in run.stdout and "unreadable" not in run.stdout
