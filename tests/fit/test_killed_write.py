"""A run killed (SIGKILL) in the middle of writing a shard leaves the shards written before it
intact, no half-written shard under a final name, and a rerun completes the dataset."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from nfkit.data.synth import SynthConfig, generate_dataset
from nfkit.fit.driver import fit_dataset
from nfkit.nerf.store import find_shards, iter_nerfs, read_nerf_shard

from ..analytic import SPEC
from .test_heldout_and_splits import CONFIG, _init_fit

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import h5py
    from nfkit.fit.driver import fit_dataset
    from tests.fit.test_heldout_and_splits import CONFIG, _init_fit
    from tests.analytic import SPEC

    data, out, marker = map(Path, sys.argv[1:4])
    real = h5py.Group.create_dataset
    shards_started = []

    def create_dataset(self, name, *args, **kwargs):
        if name == "mlp.0" and Path(self.file.filename).parent.name == SPEC.name:  # a NeRF shard (not the init)
            shards_started.append(self.file.filename)
            if len(shards_started) == 2:  # stop for good inside the second shard's write
                out_ds = real(self, name, *args, **kwargs)
                self.file.flush()
                marker.write_text(self.file.filename)
                time.sleep(600)
                return out_ds
        return real(self, name, *args, **kwargs)

    h5py.Group.create_dataset = create_dataset
    fit_dataset(data, out, [SPEC], CONFIG, fit_fn=_init_fit)
    """
)


def test_a_run_killed_during_a_shard_write_resumes(tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, SynthConfig(resolution=8, objects_per_class=5, views=2, classes=("chair",), seed=4))
    out, marker = tmp_path / "nerfs", tmp_path / "writing"
    (tmp_path / "child.py").write_text(CHILD)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), str(data), str(out), str(marker)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (marker.exists() and marker.read_text()):  # written, not just created
            assert child.poll() is None, child.stdout.read().decode()
            assert time.monotonic() < deadline, "the child never reached the second shard's write"
            time.sleep(0.05)
        being_written = Path(marker.read_text())
        assert being_written.exists() and being_written.stat().st_size > 0  # killed mid-write
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        child.stdout.close()
    arch_dir = out / SPEC.name
    assert being_written.name.startswith(".")  # the write went to a hidden temporary file
    complete = find_shards(arch_dir)
    assert len(complete) == 1 and complete[0].name.startswith("shard-")  # nothing half-written under a final name
    first = read_nerf_shard(complete[0])
    assert len(first) == CONFIG.batch_nerfs and all(np.isfinite(r.params["mlp.0"]).all() for r in first)
    summary = fit_dataset(data, out, [SPEC], CONFIG, fit_fn=_init_fit)
    assert summary.archs[SPEC.name].skipped == CONFIG.batch_nerfs and summary.archs[SPEC.name].fitted == 3
    keys = sorted(r.key for r in iter_nerfs(arch_dir))
    assert len(keys) == len(set(keys)) == 5
