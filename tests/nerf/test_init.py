"""Shared-init artifacts: determinism, fingerprints, storage, refusals."""

from __future__ import annotations

import dataclasses
import shutil

import h5py
import numpy as np
import pytest

from nfkit.io.artifacts import ArtifactError, read_header
from nfkit.nerf import init as nerf_init
from nfkit.nerf.specs import get_arch


def test_create_init_is_deterministic_and_fingerprint_tracks_the_weights():
    spec = get_arch("hash-3n")
    a, b = nerf_init.create_init(spec, 0), nerf_init.create_init(spec, 0)
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert nerf_init.create_init(spec, 1).fingerprint != a.fingerprint
    nudged = {k: v.copy() for k, v in a.params.items()}
    nudged["mlp.2"][1, 2] = np.nextafter(nudged["mlp.2"][1, 2], np.float32(1))
    assert nerf_init.init_fingerprint(spec, nudged) != a.fingerprint
    # same weights under another architecture layout -> another fingerprint
    renamed = dataclasses.replace(spec, name="my-hash")
    assert nerf_init.init_fingerprint(renamed, a.params) == a.fingerprint  # the name is only a label
    wider = dataclasses.replace(spec, hash_per_level_scale=2.5)
    assert nerf_init.init_fingerprint(wider, a.params) != a.fingerprint


def test_save_load_roundtrip(tmp_path):
    spec = get_arch("tri-8c")
    init = nerf_init.create_init(spec, 5)
    path = nerf_init.save_init(init, tmp_path / "x.init.h5")
    loaded = nerf_init.load_init(path)
    assert loaded.fingerprint == init.fingerprint and loaded.seed == 5 and loaded.path == path
    assert loaded.spec == spec
    assert all(np.array_equal(loaded.params[k], init.params[k]) for k in spec.param_shapes())
    header = read_header(path)
    assert header["kind"] == "nerf-init" and header["schema_version"] == 1
    batched = loaded.batched(3)
    assert batched["triplane"].shape == (3, *spec.param_shapes()["triplane"])


def test_corrupt_or_foreign_files_are_refused(tmp_path):
    spec = get_arch("mlp-32h")
    path = nerf_init.save_init(nerf_init.create_init(spec, 0), tmp_path / "a.init.h5")
    tampered = tmp_path / "b.init.h5"
    shutil.copy(path, tampered)
    with h5py.File(tampered, "r+") as f:
        f["params/mlp.1"][0, 0] += 1.0
    with pytest.raises(ArtifactError, match="fingerprint"):
        nerf_init.load_init(tampered)
    truncated = tmp_path / "c.init.h5"
    truncated.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ArtifactError):
        nerf_init.load_init(truncated)
    missing = tmp_path / "d.init.h5"
    shutil.copy(path, missing)
    with h5py.File(missing, "r+") as f:
        del f["params/mlp.0"]
    with pytest.raises(ArtifactError, match="malformed"):
        nerf_init.load_init(missing)
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f.attrs["nfkit_kind"] = "nerf-shard"
        f.attrs["nfkit_schema_version"] = 1
    with pytest.raises(ArtifactError, match="expected 'nerf-init'"):
        nerf_init.load_init(tmp_path / "e.h5")


def test_get_or_create_creates_once_then_loads(tmp_path):
    spec = get_arch("hash")
    first = nerf_init.get_or_create_init(spec, tmp_path, seed=3)
    assert first.path == tmp_path / "hash.init.h5" and first.path.is_file()
    mtime = first.path.stat().st_mtime_ns
    second = nerf_init.get_or_create_init(spec, tmp_path, seed=3)
    assert second.fingerprint == first.fingerprint and first.path.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="seed 3, not 4"):
        nerf_init.get_or_create_init(spec, tmp_path, seed=4)


def test_init_of_another_architecture_is_refused(tmp_path):
    mlp, tri = get_arch("mlp"), get_arch("tri")
    made = nerf_init.get_or_create_init(mlp, tmp_path)
    shutil.copy(made.path, tmp_path / "tri.init.h5")  # an mlp init where the tri init belongs
    with pytest.raises(ValueError, match=r"was made for architecture mlp .*, not tri"):
        nerf_init.get_or_create_init(tri, tmp_path)
    with pytest.raises(ValueError, match="not tri"):
        nerf_init.check_init_matches(nerf_init.load_init(made.path), tri)
    nerf_init.check_init_matches(made, dataclasses.replace(mlp, name="mlp-copy"))  # same layout: fine
