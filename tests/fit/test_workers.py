"""fit-nerfs --workers: batches fitted side by side in spawned processes (nfkit.fit.workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.data.synth import SynthConfig, generate_dataset
from nfkit.errors import ConfigError
from nfkit.fit.workers import plan_workers
from nfkit.io.artifacts import pid_alive
from nfkit.nerf.store import find_shards, read_nerf_shard

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
QUICK = ["--preset", "tiny", "--steps", "4", "--rays", "32", "--samples", "8", "--grid-res", "4",
         "--resolution", "16", "--no-progress", "--device", "cpu", "--set", "batch_nerfs=1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("workers") / "data"
    generate_dataset(root, SynthConfig(resolution=16, objects_per_class=2, views=4, classes=("chair", "lamp"), seed=3))
    return root


def _shards(out: Path, arch: str = "mlp") -> dict[frozenset, dict]:
    """keys a shard holds -> {key: record}."""
    found = {}
    for path in find_shards(out / arch):
        records = read_nerf_shard(path)
        found[frozenset(r.key for r in records)] = {r.key: r for r in records}
    return found


def test_auto_uses_one_worker_per_thread_while_each_gets_two_batches():
    assert plan_workers(0, "cpu", 8, threads=2) == (2, 1)
    assert plan_workers(0, "cpu", 3, threads=2) == (1, 2)  # a batch or two: no start-up cost
    assert plan_workers(0, "cpu", 40, threads=16) == (16, 1)
    assert plan_workers(1, "cpu", 8, threads=2) == (1, 2)
    assert plan_workers(2, "cpu", 1, threads=2) == (1, 2)  # never more workers than batches
    assert plan_workers(4, "cpu", 8, threads=2) == (4, 1)
    assert plan_workers(2, "cpu", 8, threads=8) == (2, 4)  # the threads are shared out
    assert plan_workers(0, "cuda:0", 8) == (1, 0)
    with pytest.raises(ConfigError, match="torchrun"):
        plan_workers(2, "cuda:0", 8)
    with pytest.raises(ConfigError, match=">= 0"):
        plan_workers(-1, "cpu", 8)


def test_a_bad_worker_count_is_refused_before_anything_is_written(dataset, tmp_path):
    out = tmp_path / "nerfs"
    result = runner.invoke(app, ["fit-nerfs", str(dataset), "--arch", "mlp", "--out", str(out), "--workers", "-1", *QUICK])
    assert result.exit_code == 1 and "error: --workers must be >= 0" in result.output
    assert not out.exists()


def test_two_workers_write_the_shards_one_process_writes(dataset, tmp_path):
    runs = {}
    for n in (1, 2):
        out = tmp_path / f"w{n}"
        result = runner.invoke(app, ["fit-nerfs", str(dataset), "--arch", "mlp", "--out", str(out), "--workers", str(n), *QUICK])
        assert result.exit_code == 0, result.output
        assert "mlp: fitted 4, skipped 0" in result.output
        runs[n] = _shards(out)
    assert set(runs[1]) == set(runs[2]) and len(runs[1]) == 4  # the same batches, one shard each
    for keys, records in runs[1].items():
        for key, a in records.items():
            b = runs[2][keys][key]
            assert abs(a.psnr - b.psnr) < 0.5
            for name in a.params:
                np.testing.assert_allclose(a.params[name], b.params[name], atol=5e-3)
    rerun = runner.invoke(app, ["fit-nerfs", str(dataset), "--arch", "mlp", "--out", str(tmp_path / "w2"), "--workers", "2", *QUICK])
    assert rerun.exit_code == 0 and "fitted 0, skipped 4" in rerun.output


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_killed_run_stops_its_workers_and_a_rerun_completes(dataset, tmp_path, sig):
    """SIGTERM: the parent stops its workers; SIGKILL: the workers die with it (PR_SET_PDEATHSIG)."""
    out = tmp_path / "nerfs"
    slow = ["--preset", "tiny", "--steps", "300", "--resolution", "16", "--no-progress", "--device", "cpu",
            "--set", "batch_nerfs=1"]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nfkit", "fit-nerfs", str(dataset), "--arch", "mlp", "--out", str(out), "--workers", "2", *slow],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    deadline, workers = time.monotonic() + 120, []
    while time.monotonic() < deadline and proc.poll() is None:
        workers = [k for k in _children(proc.pid) if "spawn_main" in Path(f"/proc/{k}/cmdline").read_text(errors="replace")]
        if len(workers) == 2:
            break
        time.sleep(0.2)
    assert len(workers) == 2, proc.communicate()
    time.sleep(2)  # the workers are fitting their first batches
    proc.send_signal(sig)
    assert proc.wait(timeout=60) != 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(pid_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(pid_alive(w) for w in workers)  # no worker outlives the run
    assert not [p for p in out.rglob("*") if p.name.endswith("tmp")]  # no temporary file left
    before = sum(len(r) for r in _shards(out).values()) if (out / "mlp").is_dir() else 0
    assert before < 4  # stopped before the end
    result = runner.invoke(app, ["fit-nerfs", str(dataset), "--arch", "mlp", "--out", str(out), "--workers", "2", *slow])
    assert result.exit_code == 0, result.output
    assert f"fitted {4 - before}, skipped {before}" in result.output
    assert sum(len(r) for r in _shards(out).values()) == 4
