"""The sine of the frequency encoding on the CPU, with exact argument reduction in one pass.

The encoding's bands reach arguments of ``2^47·π`` (the tri family has 48 bands). torch's
vectorised float32 sine takes a slow path above about 4·10⁴, which made ``sin`` a quarter to a
third of a CPU fit (``python -m nfkit.bench.fit`` and ``torch.profiler``). :func:`sin_`
computes the same function, the sine of each float32 argument, in one pass of a small C
kernel (``fastsin.c``): the argument is reduced exactly (fixed-point multiplication by a
table of ``2/π``), and sin/cos of the remainder are polynomials in double. Its values are the
correctly rounded sine almost everywhere; ``torch.sin``'s are within an ulp of it, so the two
differ by at most a few 1e-8 (``tests/nerf/test_fastsin.py`` checks both against float64).

The kernel is compiled at first use with the system's C compiler (``$CC`` or ``cc``,
``-O3 -march=native``) into ``$NFKIT_CACHE/native`` (default ``~/.cache/nfkit/native``), keyed
by the source, the flags and the CPU, and loaded with :mod:`ctypes`. Without a compiler, or
with ``NFKIT_FAST_SIN=0``, :func:`sin_` is ``torch.sin`` (the same values to those 1e-8).
Only float32 CPU tensors that need no gradient take this path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("fastsin.c")
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fPIC", "-shared")
PARALLEL_MIN = 1 << 16
"""Below this many values one thread does the work."""


def _pi(bits: int) -> Fraction:
    """π to ``bits`` bits (Machin's formula in integers)."""

    def arctan_inv(x: int) -> int:
        term = total = (1 << bits) // x
        k, sign = 1, -1
        while term:
            term //= x * x
            total += sign * (term // (2 * k + 1))
            k, sign = k + 1, -sign
        return total

    return Fraction(16 * arctan_inv(5) - 4 * arctan_inv(239), 1 << bits)


@functools.lru_cache(maxsize=1)
def reduction_table() -> np.ndarray:
    """``T[E] = floor(2^(E − 150 + 62) · 2/π) mod 2^64`` for the biased float32 exponents
    ``E`` the kernel reduces in fixed point (``E >= 137``, i.e. ``|x| >= 2^10``); 0 below."""
    two_over_pi = 2 / _pi(800)
    table = np.zeros(256, dtype=np.uint64)
    for e in range(137, 256):
        shift = e - 150 + 62
        table[e] = int(two_over_pi * (1 << shift)) % (1 << 64)
    return table


def _cpu_key() -> str:
    try:
        flags = next(
            (line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), ""
        )
    except OSError:
        flags = ""
    return f"{platform.machine()}|{platform.processor()}|{flags}"


def _cache_dir() -> Path:
    root = os.environ.get("NFKIT_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "nfkit"


def _compile(target: Path) -> None:
    compiler = os.environ.get("CC", "cc")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run(
            [compiler, *FLAGS, str(SOURCE), "-o", tmp], check=True, capture_output=True, timeout=120
        )
        os.replace(tmp, target)  # atomic: concurrent processes see the whole library or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.lru_cache(maxsize=1)
def _library():
    if os.environ.get("NFKIT_FAST_SIN", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + _cpu_key().encode())
        target = _cache_dir() / "native" / f"fastsin-{key.hexdigest()[:16]}.so"
        if not target.exists():
            _compile(target)
        lib = ctypes.CDLL(str(target))
        fn = lib.nfkit_sin_f32
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
        fn.restype = None
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("fast sine unavailable (%s); using torch.sin", exc)
        return None
    return fn


def available() -> bool:
    """Whether the compiled kernel loads on this machine."""
    return _library() is not None


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(torch.get_num_threads(), 1), thread_name_prefix="nfkit-sin")


def native_sin(x: Tensor, out: Tensor | None = None) -> Tensor:
    """The kernel's sine of a float32 CPU tensor (``out`` may be ``x``); needs :func:`available`."""
    fn = _library()
    if fn is None:
        raise RuntimeError("the fast sine is not available on this machine")
    if x.dtype != torch.float32 or x.device.type != "cpu":
        raise ValueError(f"expected a float32 CPU tensor, got {x.dtype} on {x.device}")
    src = x.contiguous()
    dst = torch.empty_like(src) if out is None else out
    if not dst.is_contiguous() or dst.shape != src.shape:
        raise ValueError("out must be contiguous and of the input's shape")
    n = src.numel()
    table = reduction_table().ctypes.data
    threads = min(torch.get_num_threads(), max(n // PARALLEL_MIN, 1))
    if threads <= 1:
        fn(src.data_ptr(), dst.data_ptr(), n, table)
        return dst
    # ctypes releases the GIL: the chunks run in parallel
    step = -(-n // threads)
    offsets = range(0, n, step)
    jobs = [
        _pool().submit(fn, src.data_ptr() + 4 * a, dst.data_ptr() + 4 * a, min(step, n - a), table) for a in offsets
    ]
    for job in jobs:
        job.result()
    return dst


def sin_(x: Tensor) -> Tensor:
    """``x.sin_()``: in place, through the kernel where it applies (float32, CPU, no gradient,
    contiguous), else torch's."""
    if (
        x.dtype == torch.float32
        and x.device.type == "cpu"
        and not x.requires_grad
        and x.is_contiguous()
        and x.numel() >= 1024
        and available()
    ):
        return native_sin(x, out=x)
    return x.sin_()
