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

Reader registry: each module that defines a kind registers a reader per schema version
(:func:`register_reader`); :func:`read_artifact` checks the header and dispatches on
(kind, version), so a new version adds a reader and old files stay readable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py

from nfkit import __version__
from nfkit.errors import NfkitError

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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual permissions
    try:
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


@contextlib.contextmanager
def open_artifact(
    path: str | os.PathLike, kind: str | tuple[str, ...] | None = None
) -> Iterator[h5py.File]:
    """Open an artifact read-only after checking its kind and schema version."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ArtifactError(f"{path}: unreadable or corrupt HDF5 file ({exc.__class__.__name__})") from None
    with f:
        _check_header(f, path, kind)
        yield f


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
