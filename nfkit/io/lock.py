"""One writer per output folder: an exclusive ``flock`` on ``<folder>/.nfkit.lock``.

Every stage takes its output folder with :func:`output_folder` before it writes there::

    with output_folder(out, "--out", shard=(shard_index, num_shards)):
        ...  # write artifacts (atomically, nfkit.io.artifacts.atomic_path)

- A second run that wants the same folder is refused at once with one line naming the folder
  and the holder (pid, host, command): :class:`FolderLockedError` (a :class:`UserError`, so the
  CLI prints ``error: ...`` and exits 1). Nothing is written by the refused run.
- The shards of one sharded run (``--shard-index/--num-shards``, or torchrun's
  ``RANK/WORLD_SIZE``) share the folder: each takes ``.nfkit.lock`` *shared* and
  ``.nfkit.lock.<index>-of-<count>`` exclusive, so they run side by side while an unsharded run,
  or a second process of the same shard, is refused.
- The kernel drops a lock when its process ends, however it ends (SIGKILL included): a killed
  run never blocks the next one. The lock file is removed by the last holder; one left by a
  killed run is simply locked again.
- On a shared file system the locks work where the file system supports them (NFS emulates
  ``flock`` with byte-range locks, across machines). Where it does not (``ENOLCK``,
  ``EOPNOTSUPP``), the run goes on with a warning that concurrent runs are not detected.
- Taking the folder also removes the temporary files that killed writers of this host left
  anywhere below it (:func:`nfkit.io.artifacts.remove_stale_temp_files`), and a folder that it
  created and that is still empty at the end is removed again.

Locks are re-entrant within a process (a CLI command and the library function it calls may both
take the folder).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from nfkit.errors import UserError

log = logging.getLogger(__name__)

LOCK_NAME = ".nfkit.lock"

#: lock-file path -> [fd, depth] of the locks this process holds
_held: dict[str, list[int]] = {}
_guard = threading.RLock()


class FolderLockedError(UserError):
    """Another run holds the output folder (message: one line naming the folder and the holder)."""


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _describe_holder(fd: int) -> str:
    info = _read_holder(fd)
    if not info.get("pid"):
        return "holder unknown"
    parts = [f"pid {info['pid']} on {info.get('host', '?')}"]
    if info.get("command"):
        parts.append(f"`{info['command']}`")
    if info.get("shard"):
        parts.append(f"shard {info['shard']}")
    if info.get("since"):
        parts.append(f"since {info['since']}")
    return ", ".join(parts)


def _holder_alive(fd: int) -> bool:
    """Whether the lock file names a process of this host that still runs (or one elsewhere)."""
    from nfkit.io.artifacts import pid_alive

    info = _read_holder(fd)
    try:
        pid, host = int(info["pid"]), str(info["host"])
    except (KeyError, ValueError, TypeError):
        return False
    return host != socket.gethostname() or pid_alive(pid)


def _write_holder(fd: int, shard: str | None) -> None:
    argv = [os.path.basename(sys.argv[0] or "python")] + sys.argv[1:] if sys.argv else []
    command = " ".join(argv)
    if len(command) > 200:
        command = command[:197] + "..."
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "shard": shard,
        "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with contextlib.suppress(OSError):  # only informative
        data = json.dumps(info).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _acquire(lock_path: Path, shared: bool, refuse: str, shard: str | None, label: str) -> int | None:
    """fd holding the lock, or None where the file system has no locks. A shared lock is refused
    too while a live holder of it runs another number of shards (another sharded run)."""
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    for _ in range(100):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            holder = _describe_holder(fd)
            os.close(fd)
            raise FolderLockedError(f"{refuse} ({holder}); wait for it to end or choose another folder") from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                log.warning("%s: the file system does not support locks (%s); concurrent runs writing "
                            "this folder are not detected", lock_path, os.strerror(exc.errno))
                return None
            raise
        # a releasing holder may have removed the file between our open and flock: lock the new one
        if _same_file(fd, lock_path):
            if not (shared and _holder_alive(fd)):  # shards sharing a lock: the first one running is named
                _write_holder(fd, shard)
            elif shard and str(_read_holder(fd).get("shard", "")).split("/")[-1] != shard.split("/")[-1]:
                holder = _describe_holder(fd)
                os.close(fd)
                raise FolderLockedError(f"{label}: a run with another number of shards is writing "
                                        f"to this folder ({holder}); wait for it to end or choose another folder")
            return fd
        os.close(fd)
    raise OSError(f"{lock_path}: could not be locked (it keeps being replaced)")


def _release(lock_path: Path, fd: int, shared: bool) -> None:
    try:
        if shared:  # remove the file only when no other shard holds it
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return
        with contextlib.suppress(OSError):
            if _same_file(fd, lock_path):
                lock_path.unlink()
    finally:
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, name: str = LOCK_NAME, shared: bool = False,
                what: str | None = None, shard: str | None = None, label: str | None = None) -> Iterator[None]:
    """Hold the lock file ``folder/name`` (which must exist as a folder) while the block runs;
    :class:`FolderLockedError` at once if another process holds it (``what`` starts the message).
    Re-entrant within a process."""
    lock_path = Path(folder) / name
    key = str(lock_path.resolve())
    with _guard:
        if key in _held:
            _held[key][1] += 1
            fd = None
        else:
            fd = _acquire(lock_path, shared, what or f"{folder}: another nfkit run is writing to this folder", shard,
                          label or str(folder))
            if fd is not None:
                _held[key] = [fd, 1]
    try:
        yield
    finally:
        with _guard:
            entry = _held.get(key)
            if entry is not None:
                entry[1] -= 1
                if entry[1] == 0:
                    del _held[key]
                    _release(lock_path, entry[0], shared)


def _shard_from_env() -> tuple[int, int]:
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 0, 1


def _remove_stale_below(folder: Path) -> None:
    from nfkit.io.artifacts import remove_stale_temp_files

    for root, dirs, _files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        remove_stale_temp_files(root)


@contextlib.contextmanager
def output_folder(path: str | os.PathLike, option: str = "--out",
                  shard: tuple[int, int] | None = None) -> Iterator[Path]:
    """Check, create and lock the output folder ``path`` of a stage for the block's duration.

    ``shard`` = (index, count) of a sharded run (default: ``RANK``/``WORLD_SIZE`` when set, else
    (0, 1)); see the module for what is refused. Temporary files of killed runs below the folder
    are removed; the folder is removed again if this call created it and it is still empty.
    """
    from nfkit.io.artifacts import check_output_dir

    path = check_output_dir(path, option)
    index, count = shard if shard is not None else _shard_from_env()
    created = []
    p = path
    while not p.exists():
        created.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    label = f"{option} {path}" if option else str(path)
    try:
        with contextlib.ExitStack() as stack:
            if count > 1:
                tag = f"{index + 1}/{count}"
                stack.enter_context(folder_lock(
                    path, LOCK_NAME, shared=True, shard=tag, label=label,
                    what=f"{label}: an unsharded nfkit run is writing to this folder"))
                stack.enter_context(folder_lock(
                    path, f"{LOCK_NAME}.{index}-of-{count}", shard=tag,
                    what=f"{label}: another nfkit run is writing shard {tag} to this folder"))
            else:
                stack.enter_context(folder_lock(
                    path, LOCK_NAME, what=f"{label}: another nfkit run is writing to this folder"))
            _remove_stale_below(path)
            yield path
    finally:
        for p in created:  # innermost first
            with contextlib.suppress(OSError):
                p.rmdir()  # only if still empty


def locks_output(param: str = "out", option: str = "--out"):
    """Decorator: run the function with its output folder (argument ``param``; nothing is locked
    when it is None) held by :func:`output_folder`."""
    import functools
    import inspect

    def deco(func):
        sig = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            path = sig.bind_partial(*args, **kwargs).arguments.get(param)
            if path is None:
                return func(*args, **kwargs)
            with output_folder(path, option):
                return func(*args, **kwargs)

        return wrapper

    return deco


__all__ = ["LOCK_NAME", "FolderLockedError", "folder_lock", "locks_output", "output_folder"]
