"""Two runs writing one output folder: the second is refused at once, in one line naming the
folder and the holder, and changes nothing there; the shards of one sharded run share the folder;
a killed holder's lock is gone (issue 13, item 4)."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

from nfkit.io.lock import LOCK_NAME, FolderLockedError, output_folder

from .conftest import CLASSIFY, CPU, ENCODER, FIT, MAP_CLIP, PYTHON, SYNTH, child_env, cli, ok

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from nfkit.io.lock import folder_lock, output_folder
    folder, index, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if count == 0:  # the lock synth takes, beside its dataset folder
        p = Path(folder)
        lock = folder_lock(p.parent, f".{p.name}.nfkit.lock")
    else:
        lock = output_folder(folder, "--out", shard=(index, count))
    with lock:
        print("locked", flush=True)
        sys.stdin.read()  # until the test closes our stdin
    """
)


@contextlib.contextmanager
def holding(folder: Path, shard: tuple[int, int] = (0, 1)):
    """A second process holding the output folder (as a running stage does) while the block runs."""
    proc = subprocess.Popen([PYTHON, "-c", HOLDER, str(folder), *map(str, shard)], env=child_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()


def snapshot(folder: Path) -> dict:
    """Every file and folder below ``folder`` (hidden ones too): size, time and content."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def refused_in_one_line(result, folder: Path, holder) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    assert str(folder) in errors[0] and f"pid {holder.pid} on {socket.gethostname()}" in errors[0], errors[0]
    return errors[0]


# stage -> (folder to hold, given the workspace: (reference output to start from, command))
STAGES = {
    "fit-nerfs": ("nerfs", lambda ws, out: ["fit-nerfs", ws / "data", "--arch", "mlp", "--out", out, *FIT]),
    "build-graphs": ("graphs", lambda ws, out: ["build-graphs", ws / "nerfs", "--out", out, "--force", "--no-progress"]),
    "pretrain-encoder": ("encoder", lambda ws, out: ["pretrain-encoder", ws / "graphs", ws / "nerfs", "--out", out,
                                                     "--force", *ENCODER]),
    "embed": ("embeddings", lambda ws, out: ["embed", ws / "graphs", "--encoder", ws / "encoder" / "best.h5",
                                             "--out", out, "--force", *CPU]),
    "map-clip": ("clip", lambda ws, out: ["map-clip", ws / "embeddings", ws / "data", "--out", out, *MAP_CLIP]),
    "classify": ("classify", lambda ws, out: ["classify", ws / "embeddings", "--out", out, *CLASSIFY]),
    "retrieve": (None, lambda ws, out: ["retrieve", ws / "embeddings", "--out", out, *CPU]),
    "generate gan": (None, lambda ws, out: ["generate", "gan", ws / "embeddings", "--out", out, "--preset", "tiny",
                                            "--samples", "2", "--render", "0", *CPU]),
    "render": (None, lambda ws, out: ["render", ws / "nerfs" / "mlp", "--out", out, "--turntable", "1", "--limit", "1",
                                      "--resolution", "8", "--samples", "8", "--grid-res", "4", *CPU]),
    "synth": (None, lambda ws, out: ["synth", out, *SYNTH]),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_second_run_is_refused_in_one_line_and_changes_nothing(ws, tmp_path, stage):
    reference, command = STAGES[stage]
    out = tmp_path / "out"
    if reference is not None:  # the folder holds a complete run, which must stay as it is
        shutil.copytree(ws / reference, out)
    with holding(out, (0, 0) if stage == "synth" else (0, 1)) as holder:
        before = snapshot(out)
        line = refused_in_one_line(cli(*command(ws, out)), out, holder)
        assert snapshot(out) == before
        assert "another nfkit" in line
    assert not list(tmp_path.rglob("*.nfkit.lock*")), "the holder's lock file outlived it"


def test_the_shards_of_one_run_share_the_folder_other_runs_are_refused(ws, tmp_path):
    out = tmp_path / "embeddings"
    embed = ["embed", ws / "graphs", "--encoder", ws / "encoder" / "best.h5", "--out", out, *CPU]
    with holding(out, (0, 2)) as holder:  # shard 1 of 2, running elsewhere (torchrun rank 0)
        ok(*embed, "--shard-index", "1", "--num-shards", "2")
        ok(*embed, env={"RANK": "1", "WORLD_SIZE": "2"})  # torchrun's rank 1: the same shard, done
        assert len(list(out.rglob("shard-*.h5"))) == 6
        line = refused_in_one_line(cli(*embed), out, holder)  # an unsharded run
        assert "shard 1/2" in line
        line = refused_in_one_line(cli(*embed, "--shard-index", "0", "--num-shards", "2"), out, holder)
        assert "writing shard 1/2" in line
        line = refused_in_one_line(cli(*embed, "--shard-index", "2", "--num-shards", "3"), out, holder)
        assert "another number of shards" in line
        assert sorted(p.name for p in out.glob(".nfkit.lock*")) == [LOCK_NAME, f"{LOCK_NAME}.0-of-2"]
    assert not list(out.glob(".nfkit.lock*"))  # the last holder removed it
    ok(*embed)
    assert len(list(out.rglob("shard-*.h5"))) == 12


def test_the_lock_of_a_killed_run_is_released_by_the_kernel(ws, tmp_path):
    out = tmp_path / "graphs"
    proc = subprocess.Popen([PYTHON, "-c", HOLDER, str(out), "0", "1"], env=child_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    proc.kill()  # SIGKILL: no cleanup ran
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stdin.close()
    assert (out / LOCK_NAME).exists()
    ok("build-graphs", ws / "nerfs", "--out", out, "--no-progress")
    assert not (out / LOCK_NAME).exists() and len(list(out.rglob("shard-*.h5"))) == 12


def test_output_folder_is_reentrant_and_removes_what_it_created_if_empty(tmp_path):
    new = tmp_path / "a" / "b"
    with output_folder(new) as folder:
        assert folder == new and (new / LOCK_NAME).exists()
        with output_folder(new):  # the library inside a CLI command that took it already
            pass
        assert (new / LOCK_NAME).exists()
    assert not (tmp_path / "a").exists()  # created here and left empty: removed
    with output_folder(new):
        (new / "x.h5").write_bytes(b"")
    assert sorted(p.name for p in new.iterdir()) == ["x.h5"]
    with pytest.raises(FolderLockedError, match="another nfkit run"), holding(new):
        with output_folder(new):
            pass
