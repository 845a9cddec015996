"""Worker processes that fit batches side by side on one CPU machine (``fit-nerfs --workers``).

On a CPU, a batch of NeRFs runs many small tensor operations and a Python loop per step. Two
threads inside one operation share that work badly: the elementwise kernels of a few tens of
thousands of values, the Python between them and the synchronisation of every operation leave
the second core idle a large part of the time. Fitting one batch per process, each process
with its share of the cores, keeps every core busy. Measured on the 2-core development
machine, 8 real objects, the ``cpu`` preset, 2 processes of 1 thread against 1 process of 2
threads: mlp 1.43×, tri 1.24×, hash 1.46× the NeRFs per minute in the fits themselves, the same
PSNR (the README gives the commands and the whole-run figures, start-up included).

A batch's result does not depend on the process that fits it (its seed comes from its first
object, :func:`nfkit.fit.driver.batch_seed`), so the pool hands batches to whichever worker is
free. The workers are spawned (not forked: torch's thread pools do not survive a fork), ignore
Ctrl-C (the parent stops them), and on Linux die with their parent (``PR_SET_PDEATHSIG``): a
killed ``fit-nerfs`` leaves no worker writing into a folder whose lock it no longer holds.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from nfkit.io.artifacts import sigterm_cleans_up

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def cpu_threads() -> int:
    """Threads this process may use: torch's intra-op thread count (``OMP_NUM_THREADS`` or the
    cores available to the process)."""
    import torch

    return max(1, torch.get_num_threads())


def plan_workers(requested: int, device: str, n_batches: int, threads: int | None = None) -> tuple[int, int]:
    """(worker processes, torch threads per worker) for ``n_batches`` batches to fit.

    ``requested`` 0 = auto: on the CPU one worker per thread (each with one thread), as long as
    every worker gets at least two batches (starting a worker, which imports torch, takes a few
    seconds: a run of a batch or two stays in this process); on CUDA 1 (one process per GPU:
    use torchrun). 1 = fit in this process. An explicit count is capped by the number of
    batches only; above the thread count each worker gets one thread.
    """
    from nfkit.errors import ConfigError

    if requested < 0:
        raise ConfigError(f"--workers must be >= 0 (0 = auto), got {requested}")
    on_cpu = str(device) == "cpu"
    if not on_cpu:
        if requested > 1:
            raise ConfigError(f"--workers {requested}: worker processes are for the CPU; on {device} run one process per GPU (torchrun)")
        return 1, 0
    threads = cpu_threads() if threads is None else max(1, threads)
    n = min(threads, n_batches // 2) if requested == 0 else min(requested, n_batches)
    n = max(1, n)
    return n, max(1, threads // n)


def _die_with_parent() -> None:
    """SIGTERM when the parent dies, however it dies (Linux): a worker writing a shard then
    removes its temporary file (``atomic_path``), one fitting dies at once."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _init_worker(threads: int, parent: int, log_level: int) -> None:
    """Set up a spawned worker: die with the parent, leave Ctrl-C to it, take its threads."""
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    import torch

    from nfkit.fit.malloc import tune_malloc

    torch.set_num_threads(threads)
    tune_malloc()


@contextlib.contextmanager
def worker_pool(workers: int, threads: int) -> Iterator[Callable[[Callable, Iterable[Any]], Iterator[tuple[Any, Any]]]]:
    """A pool of ``workers`` spawned processes with ``threads`` torch threads each.

    Yields ``run(fn, tasks)``, an iterator of ``(task, fn(task))`` in the order they finish
    (``fn`` must be a module-level function, ``task`` picklable). An error in a task is raised
    here; on any exit other than a normal one (an error, Ctrl-C, SIGTERM) the workers are
    stopped at once (:func:`_stop`), so the batches in flight are dropped and nothing else is
    written.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    pool = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
        initargs=(threads, os.getpid(), logging.getLogger().getEffectiveLevel()),
    )

    def run(fn: Callable, tasks: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        pending = {pool.submit(fn, t): t for t in tasks}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                task = pending.pop(fut)
                yield task, fut.result()

    ok = False
    try:
        with sigterm_cleans_up():  # SIGTERM -> SystemExit, so that the finally below stops the workers
            yield run
        ok = True
    finally:
        if ok:
            pool.shutdown(wait=True)
        else:
            _stop(pool)


def _stop(pool) -> None:
    """Stop the workers now: SIGTERM (a worker inside a shard write removes its temporary
    file), then SIGKILL for one that has not exited within 10 s."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # private, but the only handle
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)


__all__ = ["cpu_threads", "plan_workers", "worker_pool"]
