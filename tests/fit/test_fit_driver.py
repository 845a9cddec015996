"""fit-nerfs over a dataset: sharding, resume, init checks, crash safety, the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.data.synth import SynthConfig, generate_dataset
from nfkit.errors import ConfigError
from nfkit.fit.config import PRESETS, resolve_config
from nfkit.fit.driver import fit_dataset, shard_from_env, shard_selection
from nfkit.fit.trainer import fit_batch
from nfkit.io.artifacts import read_header
from nfkit.nerf.init import get_or_create_init
from nfkit.nerf.specs import get_arch
from nfkit.nerf.store import iter_nerfs, read_nerf_shard

# Two steps are enough to exercise the bookkeeping; quality is tested elsewhere.
QUICK = dataclasses.replace(PRESETS["tiny"], steps=2, rays=32, samples=8, grid_res=4, resolution=16, batch_nerfs=2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fit_driver") / "data"
    generate_dataset(
        root, SynthConfig(resolution=16, objects_per_class=5, views=4, classes=("chair",), seed=2)
    )
    return root


class CountingFit:
    """fit_batch that counts the NeRFs it fits and can fail after ``fail_after`` batches."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.nerfs = 0
        self.batches = 0
        self.fail_after = fail_after

    def __call__(self, spec, init, scenes, config, **kw):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.batches += 1
        self.nerfs += len(scenes)
        return fit_batch(spec, init, scenes, config, **kw)


def _keys(out: Path, arch: str) -> list[str]:
    return sorted(r.key for r in iter_nerfs(out / arch, load_params=False))


def test_shard_selection_is_disjoint_and_complete():
    n, k = 23, 4
    parts = [shard_selection(n, i, k) for i in range(k)]
    assert sorted(sum(parts, [])) == list(range(n))
    assert all(set(a).isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1 :])
    assert parts[1] == [1, 5, 9, 13, 17, 21]
    assert shard_from_env(None, None, {"RANK": "2", "WORLD_SIZE": "3"}) == (2, 3)
    assert shard_from_env(1, 2, {"RANK": "2", "WORLD_SIZE": "3"}) == (1, 2)
    assert shard_from_env(None, None, {}) == (0, 1)
    with pytest.raises(ConfigError, match="outside 0..2"):
        shard_selection(5, 3, 3)
    with pytest.raises(ConfigError, match="--num-shards must be >= 1"):
        shard_selection(5, 0, shard_from_env(0, 0, {})[1])  # 0 is not "the default, 1"
    with pytest.raises(ValueError):
        shard_from_env(1, None, {})


def test_sharded_runs_cover_the_dataset_once(dataset, tmp_path):
    spec = get_arch("mlp")
    out = tmp_path / "nerfs"
    for index in range(2):
        fit_dataset(dataset, out, [spec], QUICK, shard_index=index, num_shards=2)
    keys = _keys(out, "mlp")
    assert len(keys) == len(set(keys)) == 5
    fingerprints = {r.init_fingerprint for r in iter_nerfs(out / "mlp", load_params=False)}
    assert len(fingerprints) == 1  # both shards used the same shared init


def test_rerun_skips_finished_nerfs(dataset, tmp_path):
    spec = get_arch("hash-3n")
    out = tmp_path / "nerfs"
    first = CountingFit()
    summary = fit_dataset(dataset, out, [spec], QUICK, fit_fn=first, limit=3)
    assert first.nerfs == 3 and summary.archs["hash-3n"].fitted == 3
    second = CountingFit()
    summary = fit_dataset(dataset, out, [spec], QUICK, fit_fn=second)
    assert second.nerfs == 2  # only the two objects not fitted before
    assert summary.archs["hash-3n"].skipped == 3 and summary.archs["hash-3n"].fitted == 2
    third = CountingFit()
    fit_dataset(dataset, out, [spec], QUICK, fit_fn=third)
    assert third.nerfs == 0
    assert len(_keys(out, "hash-3n")) == 5


def test_killed_run_leaves_complete_shards_and_resumes(dataset, tmp_path):
    spec = get_arch("mlp-32h")
    out = tmp_path / "nerfs"
    crashing = CountingFit(fail_after=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit_dataset(dataset, out, [spec], QUICK, fit_fn=crashing)
    files = sorted((out / "mlp-32h").iterdir())
    assert len(files) == 1 and files[0].name.startswith("shard-")  # one complete shard, no temporary files
    records = read_nerf_shard(files[0])
    assert len(records) == QUICK.batch_nerfs
    assert all(np.isfinite(r.params["mlp.0"]).all() for r in records)
    resumed = CountingFit()
    fit_dataset(dataset, out, [spec], QUICK, fit_fn=resumed)
    assert resumed.nerfs == 5 - QUICK.batch_nerfs
    assert len(_keys(out, "mlp-32h")) == 5


def test_rerun_with_another_init_is_refused(dataset, tmp_path):
    spec = get_arch("mlp-2l")
    out = tmp_path / "nerfs"
    fit_dataset(dataset, out, [spec], QUICK, limit=1)
    other = get_or_create_init(spec, tmp_path / "other_inits", seed=7)
    with pytest.raises(ValueError, match="fitted from init"):
        fit_dataset(dataset, out, [spec], QUICK, init=other.path)


def test_cli_refuses_an_init_of_another_architecture(dataset, tmp_path):
    tri_init = get_or_create_init(get_arch("tri"), tmp_path / "inits", seed=0)
    out = tmp_path / "nerfs"
    result = CliRunner().invoke(
        app, ["fit-nerfs", str(dataset), "--out", str(out), "--arch", "mlp", "--init", str(tri_init.path), "--preset", "tiny"]
    )
    assert result.exit_code == 1
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "tri" in lines[0]
    assert not out.exists()


def test_cli_fit_then_render(dataset, tmp_path):
    out, views = tmp_path / "nerfs", tmp_path / "views"
    custom = tmp_path / "small-tri.json"  # a user-defined architecture
    custom.write_text(json.dumps({"name": "tri-tiny", "family": "tri", "activation": "sine", "hidden_layers": 2,
                                  "hidden_dim": 16, "freq_bands": 4, "tri_res": 8, "tri_channels": 8}))
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "fit-nerfs", str(dataset), "--out", str(out), "--arch", "mlp-2l", "--arch", str(custom),
            "--preset", "tiny", "--steps", "3", "--rays", "32", "--set", "samples=8", "--set", "grid_res=4",
            "--resolution", "16", "--limit", "2", "--device", "cpu", "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "mlp-2l: fitted 2" in result.output and "tri-tiny: fitted 2" in result.output
    config = json.loads((out / "fit_config.json").read_text())
    assert config["fit"]["steps"] == 3 and config["fit"]["samples"] == 8
    assert set(config["inits"]) == {"mlp-2l", "tri-tiny"}
    assert config["archs"]["tri-tiny"]["tri_res"] == 8
    shard = next((out / "tri-tiny").glob("shard-*.h5"))
    header = read_header(shard)
    assert header["config"]["fit"]["rays"] == 32
    assert header["inputs"]["init"] == config["inits"]["tri-tiny"]
    # a second run does nothing
    again = runner.invoke(app, ["fit-nerfs", str(dataset), "--out", str(out), "--arch", "mlp-2l", "--preset", "tiny",
                                "--steps", "3", "--resolution", "16", "--limit", "2", "--no-progress"])
    assert again.exit_code == 0 and "fitted 0, skipped 2" in again.output

    result = runner.invoke(
        app,
        ["render", str(out / "tri-tiny"), "--out", str(views), "--cameras", "dataset", "--dataset", str(dataset),
         "--views", "2", "--samples", "16", "--grid-res", "8", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    pngs = sorted(views.rglob("*.png"))
    assert len(pngs) == 2
    with Image.open(pngs[0]) as im:  # two rows of ground truth | render at 16x16, 2 px gaps
        assert im.size == (16 * 2 + 2, 16 * 2 + 2)
    result = runner.invoke(
        app, ["render", str(out / "mlp-2l"), "--out", str(views / "tt"), "--turntable", "3", "--resolution", "12",
              "--samples", "16", "--limit", "1", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    (png,) = list((views / "tt").rglob("*.png"))
    with Image.open(png) as im:
        assert im.size == (12 * 3 + 4, 12)
    missing = runner.invoke(app, ["render", str(out), "--out", str(views), "--cameras", "dataset"])
    assert missing.exit_code == 1 and "--dataset" in missing.output


def test_config_overrides_and_presets():
    cfg = resolve_config("cpu", {"steps": "7", "lr": "0.5", "random_background": "false", "lr_milestones": "0.5,0.9"})
    assert (cfg.steps, cfg.lr, cfg.random_background, cfg.lr_milestones) == (7, 0.5, False, (0.5, 0.9))
    assert PRESETS["paper"].steps == 1500 and PRESETS["paper"].grid_res == 128
    assert PRESETS["paper"].milestone_steps() == [750, 1125, 1350]
    with pytest.raises(ValueError, match="unknown config key 'stepz'"):
        resolve_config("cpu", {"stepz": "1"})
    with pytest.raises(ValueError, match="steps='many': expected an int"):
        resolve_config("cpu", {"steps": "many"})
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        resolve_config("fast")
