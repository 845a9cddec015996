"""Embedding shards: the encoder's output, one row per NeRF.

Layout (kind ``embedding-shard``, schema v1; ``data_specs/embedding-shard-v1.md``)::

    /                   root attrs: nfkit_* header, count, dim, encoder_fingerprint,
                                    encoder_kind, source_shard, source_fingerprint
    /embedding          float32 (n, dim)
    /meta/<key>         str (n,) object_id, class_name, split, arch, arch_fingerprint,
                                 init_fingerprint, source_shard; int64 (n,) source_row

``embed`` writes one embedding shard per graph shard (same relative name), so embedding another
architecture later adds shards and recomputes nothing. :func:`load_embeddings` reads any number
of shards into one :class:`EmbeddingSet` and refuses shards of different encoders.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from nfkit.errors import IncompatibleError
from nfkit.io.artifacts import (
    ArtifactError,
    find_h5_files,
    open_artifact,
    read_checked,
    register_kind,
    register_reader,
    write_artifact,
)

EMBEDDING_SHARD = "embedding-shard"
EMBEDDING_SHARD_VERSION = 1
register_kind(EMBEDDING_SHARD, EMBEDDING_SHARD_VERSION)

_STR = h5py.string_dtype("utf-8")
META_STR: tuple[str, ...] = (
    "object_id",
    "class_name",
    "split",
    "arch",
    "arch_fingerprint",
    "init_fingerprint",
    "source_shard",
)


@dataclass
class EmbeddingSet:
    """Embeddings of many NeRFs with their metadata, as numpy arrays (row ``i`` = one NeRF).

    Shapes: ``embedding`` (n, dim) float32; every entry of ``meta`` (n,) str;
    ``source_row`` (n,) int64.
    """

    embedding: np.ndarray
    meta: dict[str, np.ndarray]
    source_row: np.ndarray
    encoder_fingerprint: str = ""
    encoder_kind: str = ""
    sources: dict[str, str] = field(default_factory=dict)  # shard path -> source fingerprint

    def __post_init__(self) -> None:
        n = self.embedding.shape[0]
        if self.embedding.ndim != 2:
            raise ValueError(f"embedding must be (n, dim), got {self.embedding.shape}")
        for k in META_STR:
            self.meta.setdefault(k, np.array([""] * n, dtype=object))
            if len(self.meta[k]) != n:
                raise ValueError(f"meta {k!r} has {len(self.meta[k])} entries for {n} rows")

    def __len__(self) -> int:
        return int(self.embedding.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embedding.shape[1])

    def __getattr__(self, name: str) -> np.ndarray:
        meta = self.__dict__.get("meta")
        if meta is not None and name in meta:
            return meta[name]
        raise AttributeError(name)

    @property
    def keys(self) -> np.ndarray:
        """``class_name/object_id`` per row: the same object in every architecture."""
        return np.array(
            [f"{c}/{o}" for c, o in zip(self.meta["class_name"], self.meta["object_id"], strict=True)],
            dtype=object,
        )

    def take(self, rows: np.ndarray | Sequence[int]) -> EmbeddingSet:
        rows = np.asarray(rows, dtype=np.int64)
        return EmbeddingSet(
            embedding=self.embedding[rows],
            meta={k: v[rows] for k, v in self.meta.items()},
            source_row=self.source_row[rows],
            encoder_fingerprint=self.encoder_fingerprint,
            encoder_kind=self.encoder_kind,
            sources=dict(self.sources),
        )

    def select(
        self,
        arch: str | Iterable[str] | None = None,
        split: str | Iterable[str] | None = None,
        class_name: str | Iterable[str] | None = None,
    ) -> EmbeddingSet:
        """Rows whose architecture / split / class is among those given (None = any)."""
        mask = np.ones(len(self), dtype=bool)
        for key, want in (("arch", arch), ("split", split), ("class_name", class_name)):
            if want is None:
                continue
            want = {want} if isinstance(want, str) else set(want)
            mask &= np.isin(self.meta[key].astype(str), list(want))
        return self.take(np.flatnonzero(mask))

    def archs(self) -> list[str]:
        return sorted(set(self.meta["arch"].tolist()))

    def classes(self) -> list[str]:
        return sorted(set(self.meta["class_name"].tolist()))


def write_embedding_shard(
    path: str | Path,
    embedding: np.ndarray,
    meta: dict[str, Sequence[str]],
    source_row: Sequence[int],
    *,
    encoder_fingerprint: str,
    encoder_kind: str,
    source_shard: str = "",
    source_fingerprint: str = "",
    config: dict | None = None,
    inputs: dict[str, str] | None = None,
    input_paths: dict[str, list] | None = None,
) -> Path:
    """Write one embedding shard atomically. ``meta`` needs every key of :data:`META_STR`;
    ``input_paths`` names the files behind ``inputs`` (for ``nfkit status``)."""
    embedding = np.asarray(embedding, dtype=np.float32)
    n = embedding.shape[0]
    if embedding.ndim != 2 or n < 1:
        raise ValueError(f"embeddings must be a non-empty (n, dim) array, got {embedding.shape}")
    if not np.isfinite(embedding).all():
        raise ArtifactError(f"{path}: refusing to write non-finite embeddings")
    missing = [k for k in META_STR if k not in meta]
    if missing:
        raise ValueError(f"embedding metadata lacks {missing}")
    with write_artifact(path, EMBEDDING_SHARD, EMBEDDING_SHARD_VERSION, config, inputs, input_paths) as f:
        f.create_dataset("embedding", data=embedding)
        m = f.create_group("meta")
        for k in META_STR:
            values = [str(v) for v in meta[k]]
            if len(values) != n:
                raise ValueError(f"meta {k!r}: {len(values)} entries for {n} embeddings")
            m.create_dataset(k, data=values, dtype=_STR)
        m.create_dataset("source_row", data=np.asarray(source_row, dtype=np.int64))
        f.attrs["count"] = n
        f.attrs["dim"] = embedding.shape[1]
        f.attrs["encoder_fingerprint"] = encoder_fingerprint
        f.attrs["encoder_kind"] = encoder_kind
        f.attrs["source_shard"] = source_shard
        f.attrs["source_fingerprint"] = source_fingerprint
    return Path(path)


def _decode(values) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def read_embedding_shard(path: str | Path) -> EmbeddingSet:
    """One embedding shard; a malformed one raises :class:`ArtifactError` naming the file."""
    path = Path(path)
    with open_artifact(path, EMBEDDING_SHARD) as f:
        try:
            emb = read_checked(f["embedding"], path).astype(np.float32)
            meta = {k: _decode(read_checked(f["meta"][k], path)) for k in META_STR}
            rows = read_checked(f["meta"]["source_row"], path).astype(np.int64)
            count = int(f.attrs["count"])
            enc = str(f.attrs["encoder_fingerprint"])
            kind = str(f.attrs["encoder_kind"])
            src_fp = str(f.attrs.get("source_fingerprint", ""))
        except KeyError as exc:
            raise ArtifactError(f"{path}: malformed embedding shard (missing {exc})") from None
        except (OSError, ValueError, TypeError) as exc:
            raise ArtifactError(
                f"{path}: corrupt embedding shard ({exc.__class__.__name__})"
            ) from None
    if emb.ndim != 2 or emb.shape[0] != count or any(len(v) != count for v in meta.values()):
        raise ArtifactError(f"{path}: embedding shard arrays do not match count={count}")
    if not np.isfinite(emb).all():
        raise ArtifactError(f"{path}: embedding shard holds non-finite values")
    return EmbeddingSet(emb, meta, rows, enc, kind, {str(path): src_fp})


register_reader(EMBEDDING_SHARD, EMBEDDING_SHARD_VERSION, read_embedding_shard)


def find_embedding_shards(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    return find_h5_files(paths, kind=EMBEDDING_SHARD)


def concat(sets: Sequence[EmbeddingSet]) -> EmbeddingSet:
    """Rows of several sets (of one encoder) in order."""
    if not sets:
        raise ValueError("no embeddings to concatenate")
    fps = {s.encoder_fingerprint for s in sets}
    if len(fps) > 1:
        raise IncompatibleError(
            f"embeddings of {len(fps)} different encoders ({', '.join(sorted(fps))}) cannot be "
            "compared; embed everything with one encoder"
        )
    dims = {s.dim for s in sets}
    if len(dims) > 1:
        raise IncompatibleError(f"embeddings of different widths {sorted(dims)}")
    sources: dict[str, str] = {}
    for s in sets:
        sources.update(s.sources)
    return EmbeddingSet(
        embedding=np.concatenate([s.embedding for s in sets]),
        meta={k: np.concatenate([s.meta[k] for s in sets]) for k in META_STR},
        source_row=np.concatenate([s.source_row for s in sets]),
        encoder_fingerprint=sets[0].encoder_fingerprint,
        encoder_kind=sets[0].encoder_kind,
        sources=sources,
    )


def load_embeddings(paths: str | Path | Iterable[str | Path]) -> EmbeddingSet:
    """Every embedding shard under ``paths`` (files or folders) as one set."""
    files = find_embedding_shards(paths)
    if not files:
        shown = paths if isinstance(paths, (str, Path)) else ", ".join(map(str, paths))
        raise ArtifactError(f"{shown}: no embedding shards found (run `nfkit embed` first)")
    return concat([read_embedding_shard(p) for p in files])


def describe(es: EmbeddingSet) -> str:
    """One line per architecture and split, e.g. for logs."""
    counts: dict[tuple[str, str], int] = {}
    for a, s in zip(es.meta["arch"], es.meta["split"], strict=True):
        counts[(a, s)] = counts.get((a, s), 0) + 1
    return json.dumps({f"{a}/{s}": n for (a, s), n in sorted(counts.items())})
