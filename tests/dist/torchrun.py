"""Helpers of the scale-out tests: run a command under torchrun (two CPU processes, gloo),
and the same command in this process on one thread (torchrun gives each process one)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]


def torchrun(args: Sequence[str], nproc: int = 2, module: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node N -m nfkit ARGS`` (or a script when not
    ``module``); raises with its output when it fails."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    cmd += ["-m", "nfkit", *args] if module else list(args)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def nfkit_here(args: Sequence[str]) -> str:
    """The nfkit CLI in this process, on one thread; returns its output."""
    from nfkit.cli import app

    with one_thread():
        result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output
