"""Versioned HDF5 artifacts.

Every artifact is one HDF5 file whose root attributes say what it is:

- ``nfkit_kind``            e.g. ``"nerf-shard"``, ``"nerf-init"``, ``"graph-shard"``
- ``nfkit_schema_version``  integer, bumped on any incompatible change of that kind
- ``nfkit_version``         the package version that wrote it
- ``nfkit_config``          JSON of the resolved configuration of the stage that wrote it
- ``nfkit_inputs``          JSON mapping input name -> fingerprint (a content fingerprint of the
                            input's bytes, :func:`fingerprint_path`, or an artifact's own id)
- ``nfkit_input_paths``     JSON mapping input name -> list of paths whose
                            :func:`fingerprint_paths` is that fingerprint (absent in files of
                            older nfkit versions; ``nfkit status`` uses it to find stale files)
- ``nfkit_created``         ISO timestamp

Writes go to a temporary file in the destination folder and are renamed into place, so a
killed run never leaves a half-written artifact. Readers refuse unknown kinds and versions
with an :class:`ArtifactError` whose message is one line.

Every dataset carries a CRC-32 of its content (attribute ``nfkit_crc32``, computed from what was
written when the artifact is complete); readers load datasets with :func:`read_checked`, which
refuses one whose bytes changed since (a flipped bit, a bad disk) with an :class:`ArtifactError`
naming the file and the dataset. HDF5 errors met while reading (a truncated or damaged file)
become :class:`ArtifactError` too. Files written before the checksums existed stay readable.

Reader registry: each module that defines a kind registers a reader per schema version
(:func:`register_reader`); :func:`read_artifact` checks the header and dispatches on
(kind, version), so a new version adds a reader and old files stay readable.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import signal
import socket
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nfkit import __version__
from nfkit.errors import NfkitError, UserError

#: kind -> schema versions this nfkit can read. Each has a file in data_specs/.
log = logging.getLogger(__name__)

KNOWN_KINDS: dict[str, tuple[int, ...]] = {}


class ArtifactError(NfkitError):
    """A missing, corrupt, unknown or incompatible artifact (message fits on one line)."""


#: (kind, version) -> reader(path) of that schema
READERS: dict[tuple[str, int], Callable[[Path], Any]] = {}


def register_kind(kind: str, *versions: int) -> None:
    """Declare the schema versions of ``kind`` this nfkit can read (each in data_specs/)."""
    KNOWN_KINDS[kind] = tuple(sorted(set(KNOWN_KINDS.get(kind, ())) | set(versions)))


def register_reader(kind: str, version: int, reader: Callable[[Path], Any]) -> None:
    """Register ``reader(path)`` for files of ``kind`` schema ``version`` (and the kind)."""
    register_kind(kind, version)
    READERS[(kind, int(version))] = reader


def read_artifact(path: str | os.PathLike, kind: str | tuple[str, ...] | None = None) -> Any:
    """Read any registered artifact with the reader of its (kind, version)."""
    path = Path(path)
    with open_artifact(path, kind) as f:
        key = (str(f.attrs["nfkit_kind"]), int(f.attrs["nfkit_schema_version"]))
    reader = READERS.get(key)
    if reader is None:
        raise ArtifactError(f"{path}: no reader for {key[0]!r} v{key[1]} in nfkit {__version__}")
    return reader(path)


def fingerprint_bytes(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()[:16]


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def fingerprint_path(path: str | os.PathLike) -> str:
    """Content fingerprint of a file (its bytes) or a folder (relative names and bytes of every
    file below it, hidden ones skipped). Timestamps play no part: a replaced file with its
    modification time restored gets another fingerprint."""
    path = Path(path)
    if path.is_file():
        return fingerprint_bytes(b"file\0", _file_digest(path))
    if path.is_dir():
        chunks = [b"dir\0"]
        for q in sorted(path.rglob("*")):
            rel = q.relative_to(path)
            if q.is_file() and not any(part.startswith(".") for part in rel.parts):
                chunks += [rel.as_posix().encode(), b"\0", _file_digest(q)]
        return fingerprint_bytes(*chunks)
    raise FileNotFoundError(f"{path}: no such file or folder")


def fingerprint_paths(paths: Iterable[str | os.PathLike]) -> str:
    """One content fingerprint of several files/folders, in the order given (of one path: its
    :func:`fingerprint_path`)."""
    prints = [fingerprint_path(p) for p in paths]
    if len(prints) == 1:
        return prints[0]
    return fingerprint_bytes(*(fp.encode() + b"\0" for fp in prints))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Check, before any work, that the output folder ``path`` can be created and written.

    Creates nothing. Raises :class:`UserError` (one line) when ``path`` is an existing file,
    lies below a file, or its nearest existing folder is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: is a file, not a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: {existing} is not writable")
    return path


# ------------------------------------------------------------------ temporary files
#: Temporary files are named ``.<target>.nfkit-<host>-<pid>-<random><suffix>``: a writer
#: removes the ones of its own host whose process is gone (a killed run), never a live one.
_TMP_RE = re.compile(r"^\..+\.nfkit-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[A-Za-z0-9_]+\.[A-Za-z0-9.]*tmp$")
_live_tmp: set[Path] = set()
_sigterm_lock = threading.Lock()
_sigterm_depth = 0
_sigterm_previous = None


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (ours counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed nfkit writers on this host left in ``folder``
    (their process id is no longer running); returns what was removed. Files of live
    processes, of other hosts (a shared file system) and of other programs are kept."""
    folder = Path(folder)
    removed = []
    host = _host_tag()
    try:
        names = [e.name for e in os.scandir(folder) if e.name.startswith(".")]
    except OSError:
        return removed
    for name in names:
        m = _TMP_RE.match(name)
        if m is None or m["host"] != host or pid_alive(int(m["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError, PermissionError, IsADirectoryError):
            (folder / name).unlink()
            removed.append(folder / name)
            log.info("removed %s, left by a killed nfkit run", folder / name)
    return removed


def _on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    # Raised inside the writer's frame: atomic_path's cleanup runs, then the process exits
    # with the conventional status of a SIGTERM'd process (128 + 15).
    raise SystemExit(128 + signal.SIGTERM)


@contextlib.contextmanager
def sigterm_cleans_up() -> Iterator[None]:
    """While writing, turn SIGTERM into SystemExit so that ``finally`` blocks run (the
    default action kills the process at once and leaves the temporary file behind)."""
    global _sigterm_depth, _sigterm_previous
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    with _sigterm_lock:
        if _sigterm_depth == 0:
            current = signal.getsignal(signal.SIGTERM)
            if current in (signal.SIG_DFL, None):
                _sigterm_previous = current
                signal.signal(signal.SIGTERM, _on_sigterm)
            else:
                _sigterm_previous = False  # the application handles SIGTERM itself: keep it
        _sigterm_depth += 1
    try:
        yield
    finally:
        with _sigterm_lock:
            _sigterm_depth -= 1
            if _sigterm_depth == 0 and _sigterm_previous is not False:
                signal.signal(signal.SIGTERM, _sigterm_previous or signal.SIG_DFL)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success only.

    The temporary file is removed on any error, on Ctrl-C and on SIGTERM; temporary files
    that killed runs (SIGKILL, power loss) left in the folder are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    with sigterm_cleans_up():
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.nfkit-{_host_tag()}-{os.getpid()}-", suffix=suffix, dir=path.parent
        )
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual permissions
            yield tmp_path
            os.replace(tmp_path, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()
            raise


@contextlib.contextmanager
def write_artifact(
    path: str | os.PathLike,
    kind: str,
    version: int,
    config: dict | None = None,
    inputs: dict[str, str] | None = None,
    input_paths: Mapping[str, Sequence[str | os.PathLike]] | None = None,
) -> Iterator[h5py.File]:
    """Open a new artifact for writing; it appears at ``path`` only when the block succeeds.

    ``input_paths`` names, for inputs whose fingerprint is :func:`fingerprint_paths` of some
    files or folders, those paths (stored resolved) so that staleness can be checked later.
    """
    if kind not in KNOWN_KINDS or version not in KNOWN_KINDS[kind]:
        raise ArtifactError(f"internal: artifact kind {kind!r} v{version} is not registered")
    with atomic_path(path, suffix=".h5.tmp") as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["nfkit_kind"] = kind
            f.attrs["nfkit_schema_version"] = int(version)
            f.attrs["nfkit_version"] = __version__
            f.attrs["nfkit_config"] = json.dumps(config or {}, sort_keys=True, default=str)
            f.attrs["nfkit_inputs"] = json.dumps(inputs or {}, sort_keys=True)
            if input_paths:
                resolved = {k: [str(Path(p).resolve()) for p in v] for k, v in input_paths.items()}
                f.attrs["nfkit_input_paths"] = json.dumps(resolved, sort_keys=True)
            f.attrs["nfkit_created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            yield f
            store_checksums(f)


def _check_header(f: h5py.File, path: Path, kind: str | tuple[str, ...] | None) -> tuple[str, int]:
    try:
        got_kind = str(f.attrs["nfkit_kind"])
        got_version = int(f.attrs["nfkit_schema_version"])
    except KeyError:
        raise ArtifactError(f"{path}: not an nfkit artifact (no nfkit_kind attribute)") from None
    wanted = (kind,) if isinstance(kind, str) else kind
    if wanted is not None and got_kind not in wanted:
        raise ArtifactError(
            f"{path}: is a {got_kind!r} artifact, expected {' or '.join(map(repr, wanted))}"
        )
    if got_kind not in KNOWN_KINDS:
        raise ArtifactError(f"{path}: unknown artifact kind {got_kind!r} (nfkit {__version__})")
    if got_version not in KNOWN_KINDS[got_kind]:
        raise ArtifactError(
            f"{path}: {got_kind!r} schema v{got_version} is not supported by nfkit {__version__} "
            f"(reads v{', v'.join(map(str, KNOWN_KINDS[got_kind]))})"
        )
    return got_kind, got_version


#: HDF5 errors of a damaged file, as h5py raises them (subclasses such as FileNotFoundError are
#: about other files and pass through)
_H5_ERRORS = (OSError, RuntimeError)


def _h5_error(exc: BaseException) -> bool:
    return type(exc) in _H5_ERRORS


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


@contextlib.contextmanager
def open_artifact(
    path: str | os.PathLike, kind: str | tuple[str, ...] | None = None
) -> Iterator[h5py.File]:
    """Open an artifact read-only after checking its kind and schema version. HDF5 errors raised
    while the block reads the file become an :class:`ArtifactError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ArtifactError(f"{path}: unreadable or corrupt HDF5 file ({exc.__class__.__name__})") from None
    try:
        with f:
            _check_header(f, path, kind)
            yield f
    except _H5_ERRORS as exc:
        if not _h5_error(exc):
            raise
        raise ArtifactError(f"{path}: corrupt HDF5 file ({_first_line(exc)})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # a damaged attribute
        raise ArtifactError(f"{path}: corrupt file ({exc.__class__.__name__}: {_first_line(exc)})") from None


# ------------------------------------------------------------------ checksums
CHECKSUM_ATTR = "nfkit_crc32"
_BLOCK_BYTES = 1 << 24


def _crc(values, crc: int = 0) -> int:
    """CRC-32 of an array's content: its bytes in C order, or, for strings (object arrays), each
    element's bytes after its length."""
    arr = np.asarray(values)
    if arr.dtype.kind == "O":
        for v in arr.reshape(-1):
            b = v.encode() if isinstance(v, str) else bytes(v)
            crc = zlib.crc32(b, zlib.crc32(len(b).to_bytes(8, "little"), crc))
        return crc
    flat = np.ascontiguousarray(arr).reshape(-1)
    return zlib.crc32(flat.view(np.uint8).data, crc) if flat.size else crc


def array_checksum(arr, rows_per_block: int | None = None) -> int:
    """:func:`dataset_checksum` of an array already in memory or memory-mapped (read in blocks)."""
    arr = np.asarray(arr) if not isinstance(arr, np.ndarray) else arr
    if arr.ndim == 0 or arr.shape[0] == 0:
        return _crc(arr)
    step = rows_per_block or max(1, _BLOCK_BYTES // max(1, arr[:1].nbytes))
    crc = 0
    for s in range(0, arr.shape[0], step):
        crc = _crc(arr[s : s + step], crc)
    return crc


def dataset_checksum(ds: h5py.Dataset) -> int:
    """CRC-32 of a dataset's content, read in blocks of rows."""
    if ds.shape is None:  # a null dataspace
        return 0
    if ds.ndim == 0 or ds.shape[0] == 0:
        return _crc(ds[()])
    row = max(1, (ds.size // ds.shape[0]) * ds.dtype.itemsize)
    step = max(1, _BLOCK_BYTES // row)
    crc = 0
    for s in range(0, ds.shape[0], step):
        crc = _crc(ds[s : s + step], crc)
    return crc


def store_checksums(f: h5py.File) -> None:
    """Give every dataset of ``f`` its ``nfkit_crc32`` (done by :func:`write_artifact` when the
    artifact is complete)."""
    datasets: list[h5py.Dataset] = []
    f.visititems(lambda _name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
    for ds in datasets:
        ds.attrs[CHECKSUM_ATTR] = np.uint32(dataset_checksum(ds))


def stored_checksum(ds: h5py.Dataset) -> int | None:
    """The ``nfkit_crc32`` of a dataset, None for files written before checksums existed."""
    value = ds.attrs.get(CHECKSUM_ATTR)
    return None if value is None else int(value)


def check_checksum(got: int, expected: int | None, path: str | os.PathLike, name: str) -> None:
    if expected is not None and got != expected:
        raise ArtifactError(
            f"{path}: corrupt file: {name.lstrip('/')} does not match its checksum "
            "(changed since it was written)"
        )


def read_checked(ds: h5py.Dataset, path: str | os.PathLike | None = None):
    """``ds[()]``, refused (:class:`ArtifactError`) when it does not match its checksum."""
    data = ds[()]
    expected = stored_checksum(ds)
    if expected is not None and ds.shape is not None:  # (a null dataspace holds nothing)
        check_checksum(_crc(data), expected, path or ds.file.filename, ds.name)
    return data


def read_header(path: str | os.PathLike) -> dict:
    """Root attributes of an artifact, decoded (kind, version, config, inputs, ...)."""
    with open_artifact(path) as f:
        return {
            "kind": str(f.attrs["nfkit_kind"]),
            "schema_version": int(f.attrs["nfkit_schema_version"]),
            "nfkit_version": str(f.attrs["nfkit_version"]),
            "config": json.loads(f.attrs["nfkit_config"]),
            "inputs": json.loads(f.attrs["nfkit_inputs"]),
            "input_paths": json.loads(f.attrs.get("nfkit_input_paths", "{}")),
            "created": str(f.attrs.get("nfkit_created", "")),
            "count": int(f.attrs["count"]) if "count" in f.attrs else None,
        }


def peek_kind(path: str | os.PathLike) -> str | None:
    """The ``nfkit_kind`` of a file without validating it; None if it is not a readable
    nfkit artifact."""
    try:
        with h5py.File(path, "r") as f:
            kind = f.attrs.get("nfkit_kind")
    except OSError:
        return None
    return None if kind is None else str(kind)


def find_h5_files(
    paths: str | os.PathLike | Iterable[str | os.PathLike], kind: str | None = None
) -> list[Path]:
    """HDF5 files under the given files/folders, sorted per folder; a missing path is an error.

    Folders are searched recursively for ``*.h5`` (hidden temporary files skipped). With
    ``kind``, files found in a folder whose header names *another* nfkit kind (e.g. the shared
    inits that ``fit-nerfs`` keeps next to its shards) are skipped; unreadable files and files
    named explicitly are kept, so that their reader reports them.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            for q in sorted(p.rglob("*.h5")):
                if q.name.startswith("."):
                    continue
                other = peek_kind(q) if kind is not None else None
                if other is not None and other != kind:
                    log.info("%s: a %r artifact, not %r; skipped", q, other, kind)
                    continue
                found.append(q)
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return found
