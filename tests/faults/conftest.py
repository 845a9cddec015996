"""A tiny workspace with every stage's outputs (the reference of the fault tests), and helpers to
read artifacts back, find temporary files and run nfkit in a child process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nfkit.cli import app

REPO = Path(__file__).resolve().parents[2]
FIT = ["--preset", "tiny", "--steps", "2", "--rays", "16", "--samples", "8", "--grid-res", "4",
       "--resolution", "16", "--set", "batch_nerfs=2", "--no-progress", "--device", "cpu"]
CPU = ["--device", "cpu", "--no-progress"]
ENCODER = ["--loss", "r+c", "--preset", "tiny", "--set", "embed_norm=true", *CPU]
MAP_CLIP = ["--clip-model", "nfkit-clip-micro", "--clip-pretrained", "none", "--preset", "tiny", *CPU]
CLASSIFY = ["--preset", "tiny", *CPU]
SYNTH = ["--objects-per-class", "3", "--classes", "car,chair", "--views", "3", "--resolution", "16", "--no-progress"]


def cli(*args, env: dict | None = None):
    """Run nfkit in this process; returns the click Result."""
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def ok(*args, env: dict | None = None):
    result = cli(*args, env=env)
    assert result.exit_code == 0, result.output
    return result


def temp_files(folder: Path) -> list[Path]:
    """nfkit's temporary files (``.<name>.nfkit-<host>-<pid>-<random>.<ext>tmp``) below ``folder``."""
    return sorted(p for p in Path(folder).rglob(".*tmp") if ".nfkit-" in p.name)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1",
               **extra)
    return env


PYTHON = sys.executable


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One torch thread, here and in the children (tiny networks; equal results in both)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def ws(tmp_path_factory, _one_thread) -> Path:
    """<ws>/data (3 classes x 4 objects), nerfs (mlp, tri; 2 per shard), graphs, encoder (r+c),
    embeddings, clip (maps of a random micro CLIP, and a trained one), classify: every stage run
    once through the CLI, uninterrupted."""
    from tests.clip.conftest import make_dataset

    root = tmp_path_factory.mktemp("faults_ws")
    make_dataset(root / "data")
    ok("fit-nerfs", root / "data", "--arch", "mlp", "--arch", "tri", "--out", root / "nerfs", *FIT)
    ok("build-graphs", root / "nerfs", "--out", root / "graphs", "--no-progress")
    ok("pretrain-encoder", root / "graphs", root / "nerfs", "--out", root / "encoder", *ENCODER)
    ok("embed", root / "graphs", "--encoder", root / "encoder" / "best.h5", "--out", root / "embeddings", *CPU)
    ok("map-clip", root / "embeddings", root / "data", "--out", root / "clip", *MAP_CLIP)
    ok("classify", root / "embeddings", "--out", root / "classify", *CLASSIFY)
    ok("train-clip", root / "data", "--out", root / "clip" / "nfkit-clip.pt", "--preset", "tiny", *CPU)
    return root
