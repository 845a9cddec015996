"""nfkit's CPU kernels for the fields' encodings, compiled at first use (``native.c``).

**The sine of the frequency encoding**, with exact argument reduction in one pass.

The encoding's bands reach arguments of ``2^47·π`` (the tri family has 48 bands). torch's
vectorised float32 sine takes a slow path above about 4·10⁴, which made ``sin`` a quarter to a
third of a CPU fit (``python -m nfkit.bench.fit`` and ``torch.profiler``). :func:`sin_`
computes the same function, the sine of each float32 argument, in one pass of a small C
kernel (``native.c``, 8 values at a time with AVX2): the argument is reduced exactly
(fixed-point multiplication by the bits of ``2/π``), and sin/cos of the remainder are
polynomials in float. Its values are within 1.5 ulp of the correctly rounded sine (or about
6e-12 for tiny sines of huge arguments), as ``torch.sin``'s are within about an ulp, so the
two differ by at most about 1e-7 (``tests/nerf/test_native.py`` checks both against float64).
On a 2-core AMD EPYC it takes 1.7 ns per value and core where an earlier double-precision form
took 4.6.

Only float32 CPU tensors that need no gradient take this path.

**The hash grid's entries and weights** (:func:`hash_indices`): what
``nfkit.nerf.encodings._indices_level_major`` computes with some eighty small torch operations
per call (tiny-cuda-nn's float32 and uint32 arithmetic, level by level), in one pass, bit for
bit the same (``tests/nerf/test_native.py`` compares them).

The kernels are compiled at first use with the system's C compiler (``$CC`` or ``cc``,
``-O3 -march=native``) into ``$NFKIT_CACHE/native`` (default ``~/.cache/nfkit/native``), keyed
by the source, the flags and the CPU, and loaded with :mod:`ctypes`. Without a compiler, or
with ``NFKIT_NATIVE=0``, the torch code runs instead (the same values: the sine to a few 1e-8,
the hash grid exactly).
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

SOURCE = Path(__file__).with_name("native.c")
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-ffp-contract=off", "-fPIC", "-shared")
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
def two_over_pi_words() -> np.ndarray:
    """The first 224 bits of ``2/π`` after the point as eight 32-bit words,
    ``W[k] = floor(2^(32k) · 2/π) mod 2^32`` (``W[0] = 0``): the kernel cuts the fixed-point
    multiplier ``floor(2^(E − 88) · 2/π) mod 2^64`` of a float32 exponent ``E >= 137``
    (``|x| >= 2^10``) from them."""
    two_over_pi = 2 / _pi(800)
    return np.array([int(two_over_pi * (1 << (32 * k))) % (1 << 32) for k in range(8)], dtype=np.uint32)


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
    if os.environ.get("NFKIT_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + _cpu_key().encode())
        target = _cache_dir() / "native" / f"native-{key.hexdigest()[:16]}.so"
        if not target.exists():
            _compile(target)
        lib = ctypes.CDLL(str(target))
        ptr, i64 = ctypes.c_void_p, ctypes.c_int64
        lib.nfkit_sin_f32.argtypes = [ptr, ptr, i64, ptr]
        lib.nfkit_sin_f32.restype = None
        lib.nfkit_sin_f32_scalar.argtypes = [ptr, ptr, i64, ptr]
        lib.nfkit_sin_f32_scalar.restype = None
        lib.nfkit_hash_indices.argtypes = [ptr, i64, ctypes.c_double, ctypes.c_uint32, ctypes.c_uint32, i64,
                                           ctypes.c_int32, ptr, ptr]
        lib.nfkit_hash_indices.restype = None
        lib.nfkit_hash_gather.argtypes = [ptr, ptr, ptr, i64, i64, ptr]
        lib.nfkit_hash_gather.restype = None
        lib.nfkit_hash_scatter.argtypes = [ptr, ptr, ptr, i64, i64, ptr]
        lib.nfkit_hash_scatter.restype = None
    except (OSError, AttributeError, subprocess.SubprocessError) as exc:
        log.info("nfkit's C kernels are unavailable (%s); using torch", exc)
        return None
    return lib


def available() -> bool:
    """Whether the compiled kernels load on this machine."""
    return _library() is not None


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """The worker threads of the kernels, one pool per process: a child forked after the
    parent made its pool (e.g. ``generate``'s per-core workers) inherits no live threads, so
    it makes its own instead of waiting forever on the parent's."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=max(torch.get_num_threads(), 1), thread_name_prefix="nfkit-native"))
    return _POOL[1]


def _run_parallel(n: int, job) -> None:
    """``job(start, stop)`` over ``range(n)`` split among torch's threads (ctypes drops the GIL)."""
    threads = min(torch.get_num_threads(), max(n // PARALLEL_MIN, 1))
    if threads <= 1:
        job(0, n)
        return
    step = -(-n // threads)
    for f in [_pool().submit(job, a, min(a + step, n)) for a in range(0, n, step)]:
        f.result()


def native_sin(x: Tensor, out: Tensor | None = None, vector: bool = True) -> Tensor:
    """The kernel's sine of a float32 CPU tensor (``out`` may be ``x``); needs :func:`available`.
    ``vector=False`` runs the kernel's scalar code only (the same values, for tests)."""
    lib = _library()
    if lib is None:
        raise RuntimeError("nfkit's C kernels are not available on this machine")
    fn = lib.nfkit_sin_f32 if vector else lib.nfkit_sin_f32_scalar
    if x.dtype != torch.float32 or x.device.type != "cpu":
        raise ValueError(f"expected a float32 CPU tensor, got {x.dtype} on {x.device}")
    src = x.contiguous()
    dst = torch.empty_like(src) if out is None else out
    if not dst.is_contiguous() or dst.shape != src.shape:
        raise ValueError("out must be contiguous and of the input's shape")
    table = two_over_pi_words().ctypes.data
    # ctypes releases the GIL: the chunks run in parallel
    _run_parallel(src.numel(), lambda a, b: fn(src.data_ptr() + 4 * a, dst.data_ptr() + 4 * a, b - a, table))
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


def hash_indices(levels, u: Tensor, batch_entries: int, entries: Tensor, weights: Tensor) -> bool:
    """Fill ``entries`` (L, B, N, 8) int32 and ``weights`` (L, B, N, 8) float32 with the hash
    grid's table entries and trilinear weights of positions ``u`` (B, N, 3), as
    ``nfkit.nerf.encodings._indices_level_major`` defines them (NeRF ``b``'s entries shifted
    by ``b·batch_entries``). Returns False, touching nothing, where the kernel does not apply
    (no kernel, not float32 on the CPU, int64 entries)."""
    lib = _library()
    if (
        lib is None
        or u.device.type != "cpu"
        or u.dtype != torch.float32
        or u.dim() != 3
        or entries.dtype != torch.int32
        or not (entries.is_contiguous() and weights.is_contiguous())
    ):
        return False
    b, n = u.shape[:2]
    src = u.detach().contiguous()
    n_points = b * n
    ent, wgt = entries.view(len(levels), n_points, 8), weights.view(len(levels), n_points, 8)

    def job(start: int, stop: int) -> None:
        for i, lv in enumerate(levels):
            lib.nfkit_hash_indices(src.data_ptr() + 12 * start, stop - start, lv.scale, lv.resolution, lv.size,
                                   lv.offset, int(lv.dense), ent[i, start:].data_ptr(), wgt[i, start:].data_ptr())

    _run_parallel(n_points, job)
    if batch_entries and b > 1:
        shift = torch.arange(b, dtype=torch.int32).view(1, b, 1, 1) * batch_entries
        entries.add_(shift)
    return True


def hash_gather_applies(rows: Tensor, entries: Tensor, weights: Tensor) -> bool:
    """Whether :func:`hash_gather` / :func:`hash_scatter` can take these tensors."""
    return (
        _library() is not None
        and rows.device.type == "cpu"
        and rows.dtype == torch.float32
        and entries.dtype == torch.int32
        and weights.dtype == torch.float32
        and rows.is_contiguous()
        and entries.is_contiguous()
        and weights.is_contiguous()
    )


def hash_gather(rows: Tensor, entries: Tensor, weights: Tensor) -> Tensor:
    """``out[..., f] = Σ_k rows[entries[..., k], f] · weights[..., k]``: (..., 8) entries and
    weights, (R, F) rows -> (..., F), the corners summed in order."""
    lib = _library()
    nf = rows.shape[1]
    out = torch.empty(*entries.shape[:-1], nf, dtype=torch.float32)
    n = entries.numel() // 8

    def job(start: int, stop: int) -> None:
        lib.nfkit_hash_gather(rows.data_ptr(), entries.data_ptr() + 32 * start, weights.data_ptr() + 32 * start,
                              stop - start, nf, out.data_ptr() + 4 * nf * start)

    _run_parallel(n, job)
    return out


def hash_scatter(grad: Tensor, entries: Tensor, weights: Tensor, n_rows: int) -> Tensor:
    """The gradient of :func:`hash_gather` with respect to its (n_rows, F) rows, accumulated in
    double in a fixed order. ``entries`` (L, ..., 8): the levels, whose entries are disjoint,
    run in parallel."""
    lib = _library()
    nf = grad.shape[-1]
    grad = grad.contiguous()
    acc = torch.zeros(n_rows, nf, dtype=torch.float64)
    levels = entries.shape[0]
    per = entries[0].numel() // 8

    def level(i: int) -> None:
        lib.nfkit_hash_scatter(grad.data_ptr() + 4 * nf * per * i, entries.data_ptr() + 32 * per * i,
                               weights.data_ptr() + 32 * per * i, per, nf, acc.data_ptr())

    if torch.get_num_threads() > 1 and per * levels >= PARALLEL_MIN // 8:
        for f in [_pool().submit(level, i) for i in range(levels)]:
            f.result()
    else:
        for i in range(levels):
            level(i)
    return acc.to(torch.float32)
