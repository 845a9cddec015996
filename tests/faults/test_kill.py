"""Kill a stage with SIGTERM and with SIGKILL while it writes, then rerun it (issue 13, item 4).

Each stage runs in a child process (forked from the test, which has torch and nfkit loaded, so
that it starts at once) through the ``nfkit`` CLI; its N-th artifact write pauses just before the
rename into place (a test-side wrapper of ``nfkit.io.artifacts.atomic_path``: the temporary file
is on disk, complete artifacts before it too), and it is killed there. Then:

- SIGTERM leaves no temporary file; SIGKILL leaves exactly the one being written;
- every complete artifact in the output folder opens with nfkit's reader and has its rows;
- the rerun completes, removes the dead run's temporary file, and its result equals the
  uninterrupted run's (the ``ws`` fixture), bit for bit.

Both signals of a stage run side by side (two processes), to keep the test short.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

from nfkit.io.artifacts import read_artifact, read_checked, read_header

from .conftest import CLASSIFY, CPU, ENCODER, FIT, MAP_CLIP, SYNTH, cli, temp_files


def _install_pause(pause: str, marker: Path) -> None:
    """In the child: pause (sleep) at the point ``pause`` names, after writing ``marker``.

    ``glob:N``: the N-th atomic write of a file whose name matches, just before its rename into
    place (the temporary file is complete on disk); ``module:function:N``: before the N-th call."""
    from nfkit.io import artifacts

    seen = []

    def hold(what) -> None:
        marker.write_text(str(what))
        # until killed: the parent deals with the children one after the other, so on a
        # loaded machine the second one may wait minutes (a 120 s pause once ran out in CI)
        time.sleep(1800)

    *where, nth = pause.split(":")
    if len(where) == 2:
        module = importlib.import_module(where[0])
        real_fn = getattr(module, where[1])

        def paused_fn(*args, **kwargs):
            seen.append(1)
            if len(seen) == int(nth):
                hold(args[0])
            return real_fn(*args, **kwargs)

        setattr(module, where[1], paused_fn)
        return
    real = artifacts.atomic_path

    @contextlib.contextmanager
    def atomic_path(path, suffix=".tmp"):
        with real(path, suffix) as tmp:
            yield tmp
            if fnmatch.fnmatch(Path(path).name, where[0]):
                seen.append(path)
                if len(seen) == int(nth):
                    hold(tmp)

    for module in list(sys.modules.values()):  # every module that imported it by name
        if getattr(module, "atomic_path", None) is real:
            module.atomic_path = atomic_path


def start(args, pause: str, folder: Path) -> tuple[int, Path]:
    """Fork a child that runs ``nfkit ARGS`` (this process has torch and nfkit loaded already, so
    the child starts at once) and pauses at ``pause``; (its pid, the marker it writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "marker"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid, marker
    code = 1
    try:  # the child: never back into pytest
        from nfkit.cli import app

        _install_pause(pause, marker)
        app([str(a) for a in args], prog_name="nfkit")
        code = 0
    except SystemExit as exc:  # click's exit, or SIGTERM turned into SystemExit(143) by nfkit
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:  # noqa: BLE001 - report and fail
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def wait_and_kill(pid: int, marker: Path, sig: int) -> Path:
    """Wait until the child pauses inside its write, then send ``sig``; the file being written."""
    try:
        deadline = time.monotonic() + 180
        while not (marker.exists() and marker.read_text()):
            done, status = os.waitpid(pid, os.WNOHANG)
            assert done == 0, f"the child ended before its pause (status {status})"
            assert time.monotonic() < deadline, "the child never reached its pause"
            time.sleep(0.02)
        writing = Path(marker.read_text())
        assert writing.exists()
        os.kill(pid, sig)
        _, status = os.waitpid(pid, 0)
        pid = 0
        if sig == signal.SIGTERM:  # nfkit's handler: cleanup, then the exit status of a SIGTERM
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGTERM, status
        else:
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
        return writing
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def read_back(path: Path) -> None:
    """The artifact opens with nfkit's reader of its kind, every dataset matches its checksum,
    and it holds the rows its header counts."""
    import h5py

    header = read_header(path)
    obj = read_artifact(path) if header["kind"] != "render-targets" else None
    if header["count"] is not None and hasattr(obj, "__len__"):
        assert len(obj) == header["count"], path
    with h5py.File(path, "r") as f:
        f.visititems(lambda _n, o: read_checked(o, path) if isinstance(o, h5py.Dataset) else None)


def check_complete(out: Path) -> int:
    """Read back every complete artifact (and JSON file) below ``out``; how many there are."""
    n = 0
    for p in sorted(out.rglob("*")):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix == ".h5":
            read_back(p)
            n += 1
        elif p.suffix == ".json":
            json.loads(p.read_text())
    return n


# ------------------------------------------------------------------ what equals what
def nerfs_of(folder: Path, arch: str) -> dict:
    from nfkit.nerf.store import iter_nerfs

    return {r.key: (r.params, r.psnr) for r in iter_nerfs(folder / arch)}


def same_nerfs(ws: Path, out: Path) -> None:
    got, want = nerfs_of(out, "mlp"), nerfs_of(ws / "nerfs", "mlp")
    assert sorted(got) == sorted(want)
    for key, (params, psnr) in want.items():
        assert got[key][1] == psnr
        for name, value in params.items():
            np.testing.assert_array_equal(got[key][0][name], value, err_msg=f"{key} {name}")


def same_graphs(ws: Path, out: Path) -> None:
    from nfkit.graphs.store import GraphShard, find_graph_shards

    want = {p.relative_to(ws / "graphs"): p for p in find_graph_shards(ws / "graphs")}
    got = {p.relative_to(out): p for p in find_graph_shards(out)}
    assert sorted(got) == sorted(want)
    for rel, p in want.items():
        a, b = GraphShard(p), GraphShard(got[rel])
        assert [m.object_id for m in a.meta] == [m.object_id for m in b.meta]
        for name in ("x", "edge_index", "edge_attr"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=f"{rel} {name}")


def same_encoder(ws: Path, out: Path) -> None:
    from nfkit.encoder.checkpoint import load_checkpoint

    for name in ("best.h5", "last.h5"):
        a, b = load_checkpoint(ws / "encoder" / name), load_checkpoint(out / name)
        assert (b.epoch, b.best_epoch) == (a.epoch, a.best_epoch), name
        assert b.encoder_fingerprint == a.encoder_fingerprint, name  # the embedding statistics too
    log = json.loads((out / "train_log.json").read_text())
    assert len(log["history"]) == len(json.loads((ws / "encoder" / "train_log.json").read_text())["history"])


def _embeddings(folder: Path) -> dict:
    from nfkit.embed.store import load_embeddings

    es = load_embeddings(folder)
    return {(str(a), str(k)): e for a, k, e in zip(es.arch, es.keys, es.embedding, strict=True)}


def same_embeddings(ws: Path, out: Path) -> None:
    got, want = _embeddings(out), _embeddings(ws / "embeddings")
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value, err_msg=str(key))


def same_maps(ws: Path, out: Path) -> None:
    from nfkit.clip.maps import load_maps

    a, b = load_maps(ws / "clip" / "maps.h5"), load_maps(out / "maps.h5")
    for net in ("nerf2clip", "clip2nerf"):
        for (k, v), (k2, v2) in zip(getattr(a, net).state_dict().items(), getattr(b, net).state_dict().items(), strict=True):
            assert k == k2
            np.testing.assert_array_equal(v.numpy(), v2.numpy(), err_msg=f"{net} {k}")
    assert json.loads((out / "map-clip.json").read_text())["metrics"] == json.loads((ws / "clip" / "map-clip.json").read_text())["metrics"]


def same_classify(ws: Path, out: Path) -> None:
    want = json.loads((ws / "classify" / "classify.json").read_text())
    got = json.loads((out / "classify.json").read_text())
    assert got["accuracy"] == want["accuracy"] and sorted(got["classifiers"]) == sorted(want["classifiers"])


def same_dataset(ref: Path, out: Path) -> None:
    from nfkit.io.artifacts import fingerprint_path

    assert fingerprint_path(out) == fingerprint_path(ref)  # every file, byte for byte
    assert not list(out.parent.glob(f".{out.name}.*"))  # no partial or old folder left


# stage -> (command(ws, out), SIGTERM pause, SIGKILL pause, extra rerun options, comparison)
STAGES = {
    "fit-nerfs": (lambda ws, out: ["fit-nerfs", ws / "data", "--arch", "mlp", "--out", out, *FIT],
                  "shard-*.h5:2", "shard-*.h5:4", [], same_nerfs),
    "build-graphs": (lambda ws, out: ["build-graphs", ws / "nerfs", "--out", out, "--no-progress"],
                     "shard-*.h5:3", "shard-*.h5:8", [], same_graphs),
    # SIGKILL while the embedding statistics are stored in last.h5, before best.h5 gets them
    "pretrain-encoder": (lambda ws, out: ["pretrain-encoder", ws / "graphs", ws / "nerfs", "--out", out, *ENCODER],
                         "last.h5:1", "last.h5:3", ["--resume"], same_encoder),
    "embed": (lambda ws, out: ["embed", ws / "graphs", "--encoder", ws / "encoder" / "best.h5", "--out", out, *CPU],
              "shard-*.h5:2", "shard-*.h5:7", [], same_embeddings),
    "map-clip": (lambda ws, out: ["map-clip", ws / "embeddings", ws / "data", "--out", out, *MAP_CLIP],
                 "cache-*.h5:1", "maps.h5:1", [], same_maps),
    "classify": (lambda ws, out: ["classify", ws / "embeddings", "--out", out, *CLASSIFY],
                 "classifier-*.h5:2", "classify.json:1", [], same_classify),
    # synth writes a hidden sibling folder and renames it into place: killed before the rename
    "synth": (lambda ws, out: ["synth", out, *SYNTH], "nfkit.data.synth:_install:1",
              "nfkit.data.synth:_install:1", [], None),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_killed_stage_leaves_complete_artifacts_and_a_rerun_equals_an_uninterrupted_run(ws, tmp_path, stage):
    command, term_at, kill_at, rerun_extra, same = STAGES[stage]
    runs = {}
    for sig, pause in ((signal.SIGTERM, term_at), (signal.SIGKILL, kill_at)):
        out = tmp_path / sig.name / "out"
        runs[sig] = (out, *start(command(ws, out), pause, tmp_path / sig.name))
    for sig, (out, pid, marker) in runs.items():
        writing = wait_and_kill(pid, marker, sig)
        if stage == "synth":  # the hidden partial folder, never the dataset
            assert not out.exists() and writing.exists() == (sig == signal.SIGKILL)
        else:
            left = temp_files(out)
            assert left == ([writing] if sig == signal.SIGKILL else []), left
            assert check_complete(out) >= 1 or stage == "map-clip"
        result = cli(*command(ws, out), *rerun_extra)
        assert result.exit_code == 0, result.output
        assert temp_files(out.parent) == [], "the rerun left or kept a temporary file"
        assert not list(out.parent.rglob(".nfkit.lock*")), "the lock file outlived the run"
        if stage == "synth":
            ref = tmp_path / "ref" / "out"
            if not ref.exists():
                assert cli("synth", ref, *SYNTH).exit_code == 0
            same_dataset(ref, out)
        else:
            check_complete(out)
            same(ws, out)
