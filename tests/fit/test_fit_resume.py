"""Reruns of fit-nerfs with other filters or options never lose or mix NeRFs (issue 7, items 4, 6, 8)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.data.synth import SynthConfig, generate_dataset
from nfkit.errors import IncompatibleError
from nfkit.fit.config import PRESETS
from nfkit.fit.driver import fit_dataset
from nfkit.io.artifacts import fingerprint_paths, read_header
from nfkit.nerf.specs import get_arch
from nfkit.nerf.store import find_shards, iter_nerfs

QUICK = dataclasses.replace(PRESETS["tiny"], steps=2, rays=32, samples=8, grid_res=4, resolution=16, batch_nerfs=2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fit_resume") / "data"
    generate_dataset(
        root, SynthConfig(resolution=16, objects_per_class=3, views=4, classes=("chair", "car"), seed=3)
    )
    return root


def _snapshot(out: Path, arch: str) -> dict[str, np.ndarray]:
    return {r.key: r.params["mlp.0"].copy() for r in iter_nerfs(out / arch)}


def test_rerun_with_another_filter_keeps_every_finished_nerf(dataset, tmp_path):
    spec, out = get_arch("mlp-2l"), tmp_path / "nerfs"
    fit_dataset(dataset, out, [spec], QUICK, classes=["chair"])
    first = _snapshot(out, "mlp-2l")
    assert sorted(k.split("/")[0] for k in first) == ["chair"] * 3
    # another class: its first batch would have been shard-000000 under position naming
    summary = fit_dataset(dataset, out, [spec], QUICK, classes=["car"], limit=2)
    assert summary.archs["mlp-2l"].fitted == 2
    second = _snapshot(out, "mlp-2l")
    for key, weights in first.items():  # every earlier NeRF survives, bit for bit
        np.testing.assert_array_equal(second[key], weights)
    assert len(second) == 5
    # no filter: only the one car left is fitted, nothing is overwritten
    summary = fit_dataset(dataset, out, [spec], QUICK)
    assert (summary.archs["mlp-2l"].fitted, summary.archs["mlp-2l"].skipped) == (1, 5)
    final = _snapshot(out, "mlp-2l")
    assert len(final) == 6 and all(np.array_equal(final[k], v) for k, v in second.items())
    names = [p.name for p in find_shards(out / "mlp-2l")]
    assert len(names) == len(set(names)) == 4  # 2 chair batches, 1 car batch, 1 car
    config = json.loads((out / "fit_config.json").read_text())
    assert config["inits"]["mlp-2l"] and config["datasets"] == [str(dataset.resolve())]


def test_fitting_more_with_other_hyper_parameters_is_refused(dataset, tmp_path):
    spec, out = get_arch("mlp"), tmp_path / "nerfs"
    fit_dataset(dataset, out, [spec], QUICK, limit=1)
    before = (out / "fit_config.json").read_text()
    with pytest.raises(IncompatibleError, match=r"another config \(steps: 2 -> 3\)"):
        fit_dataset(dataset, out, [spec], dataclasses.replace(QUICK, steps=3), limit=2)
    assert (out / "fit_config.json").read_text() == before  # not overwritten
    assert len(list(iter_nerfs(out / "mlp", load_params=False))) == 1
    # the same options resume; other options with nothing left to fit are fine too
    fit_dataset(dataset, out, [spec], QUICK, limit=2)
    summary = fit_dataset(dataset, out, [spec], dataclasses.replace(QUICK, steps=3), limit=2)
    assert summary.archs["mlp"].fitted == 0


def test_cli_refusal_is_one_line(dataset, tmp_path):
    out = tmp_path / "nerfs"
    base = ["fit-nerfs", str(dataset), "--out", str(out), "--arch", "mlp", "--preset", "tiny", "--steps", "2",
            "--rays", "16", "--set", "samples=8", "--set", "grid_res=4", "--resolution", "16", "--no-progress"]
    assert CliRunner().invoke(app, [*base, "--limit", "1"]).exit_code == 0
    result = CliRunner().invoke(app, [*base, "--limit", "2", "--set", "lr=0.5"])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "lr: 0.01 -> 0.5" in lines[0]


def test_shards_store_content_fingerprints_and_the_resolved_config(dataset, tmp_path):
    out = tmp_path / "nerfs"
    cfg = dataclasses.replace(QUICK, sampler="auto")
    fit_dataset(dataset, out, [get_arch("mlp")], cfg, classes=["car"], limit=1, device="cpu")
    (shard,) = find_shards(out / "mlp")
    header = read_header(shard)
    assert header["config"]["fit"]["sampler"] == "grid"  # what ran, not "auto"
    assert json.loads((out / "fit_config.json").read_text())["fit"]["sampler"] == "grid"
    folders = header["input_paths"]["objects"]
    assert len(folders) == 1 and Path(folders[0]).parent.name == "02958343"  # the car synset
    assert header["inputs"]["objects"] == fingerprint_paths(folders)
    # a replaced image with its size and modification time restored changes the fingerprint
    image = sorted(Path(folders[0]).rglob("*.png"))[0]
    st = image.stat()
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(image)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint_paths(folders) != header["inputs"]["objects"]
