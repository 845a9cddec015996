"""The artifact layer: headers, atomic writes, refusal of unknown kinds/versions/corruption."""

import json

import h5py
import numpy as np
import pytest

from nfkit import __version__
from nfkit.io.artifacts import (
    ArtifactError,
    atomic_path,
    open_artifact,
    read_header,
    register_kind,
    write_artifact,
)

register_kind("test-kind", 1)


def test_header_round_trip(tmp_path):
    path = tmp_path / "a.h5"
    with write_artifact(path, "test-kind", 1, config={"lr": 0.01}, inputs={"data": "abc"}) as f:
        f.create_dataset("x", data=np.arange(3))
    header = read_header(path)
    assert header["kind"] == "test-kind"
    assert header["schema_version"] == 1
    assert header["nfkit_version"] == __version__
    assert header["config"] == {"lr": 0.01}
    assert header["inputs"] == {"data": "abc"}
    with open_artifact(path, "test-kind") as f:
        assert f["x"][()].tolist() == [0, 1, 2]


def test_failed_write_leaves_nothing_and_keeps_old(tmp_path):
    path = tmp_path / "a.h5"
    with write_artifact(path, "test-kind", 1) as f:
        f.attrs["marker"] = "old"
    with pytest.raises(RuntimeError):
        with write_artifact(path, "test-kind", 1) as f:
            f.attrs["marker"] = "new"
            raise RuntimeError("killed mid-write")
    with open_artifact(path) as f:
        assert f.attrs["marker"] == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]


def test_atomic_path_renames_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("hello")
        assert not target.exists()
    assert target.read_text() == "hello"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_current_umask()


def _current_umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_wrong_kind_unknown_version_and_corruption_are_refused(tmp_path):
    path = tmp_path / "a.h5"
    with write_artifact(path, "test-kind", 1):
        pass
    with pytest.raises(ArtifactError, match="expected 'other-kind'"):
        with open_artifact(path, "other-kind"):
            pass
    with h5py.File(path, "r+") as f:
        f.attrs["nfkit_schema_version"] = 99
    with pytest.raises(ArtifactError, match="v99 is not supported"):
        read_header(path)

    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.attrs["something"] = json.dumps({})
    with pytest.raises(ArtifactError, match="not an nfkit artifact"):
        read_header(plain)

    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(ArtifactError, match="corrupt"):
        read_header(garbage)
    with pytest.raises(ArtifactError, match="no such artifact"):
        read_header(tmp_path / "missing.h5")


def test_unregistered_kind_cannot_be_written(tmp_path):
    with pytest.raises(ArtifactError, match="not registered"):
        with write_artifact(tmp_path / "x.h5", "never-registered", 1):
            pass
