"""Graph shards, reading: index and metadata in memory, the big arrays memory-mapped.

Registered as the reader of ``graph-shard`` v1 (:func:`nfkit.io.artifacts.read_artifact`).
A shard whose vocabulary is a subset of this nfkit's (written before new node or edge types
were added) stays readable; only conflicting codes are refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np

from nfkit.graphs.collate import data_attrs, make_batch
from nfkit.graphs.schema import ParamGraph, vocabulary_conflict
from nfkit.graphs.shard_writer import _META_STR, GRAPH_SHARD, GRAPH_SHARD_VERSION, GraphMeta
from nfkit.io.artifacts import (
    ArtifactError,
    array_checksum,
    check_checksum,
    find_h5_files,
    open_artifact,
    read_checked,
    register_reader,
    stored_checksum,
)
from nfkit.nerf.specs import ArchSpec

_ARRAYS = ("x", "edge_index", "edge_attr", "nf2vec_rows")


def _layout(f: h5py.File, name: str, path: Path, file_size: int):
    """(offset, dtype, shape, checksum) of a contiguous dataset to memory-map (its checksum is
    checked when it is first mapped), or its data when the dataset cannot be mapped (chunked,
    compressed or empty)."""
    ds = f[name]
    offset = ds.id.get_offset()
    if offset is None or ds.chunks is not None or ds.size == 0:
        return read_checked(ds, path)
    if offset + ds.size * ds.dtype.itemsize > file_size:
        raise ArtifactError(
            f"{path}: graph shard is truncated ({name} ends past the end of the file)"
        )
    return (offset, ds.dtype, ds.shape, stored_checksum(ds))


def _decode(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


class GraphShard:
    """A graph shard opened for reading: index and metadata in memory, the big arrays
    memory-mapped on first use (:meth:`release` unmaps them; they are remapped when needed, so
    a dataset of thousands of shards need not keep thousands of files open)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open_artifact(self.path, GRAPH_SHARD) as f:
            try:
                self.count = int(f.attrs["count"])
                problem = vocabulary_conflict(json.loads(f.attrs["vocabulary"]))
                if problem:
                    raise ArtifactError(f"{self.path}: graph vocabulary conflicts with this nfkit's ({problem})")
                self.specs = {
                    fp: ArchSpec.from_dict(d) for fp, d in json.loads(f.attrs["arch_specs"]).items()
                }
                self.attrs = {k: f.attrs[k] for k in f.attrs if not k.startswith("nfkit_")}
                self.node_ptr = read_checked(f["node_ptr"], self.path).astype(np.int64)
                self.edge_ptr = read_checked(f["edge_ptr"], self.path).astype(np.int64)
                size = self.path.stat().st_size
                self._layouts = {
                    name: _layout(f, name, self.path, size) for name in _ARRAYS if name in f
                }
                shapes = {n: f[n].shape for n in self._layouts}
                meta = {k: _decode(read_checked(f["meta"][k], self.path)) for k in _META_STR}
                rows = read_checked(f["meta"]["source_row"], self.path).astype(np.int64).tolist()
            except KeyError as exc:
                raise ArtifactError(f"{self.path}: malformed graph shard (missing {exc})") from None
            except (ValueError, TypeError) as exc:
                raise ArtifactError(f"{self.path}: malformed graph shard ({exc})") from None
            except OSError as exc:
                raise ArtifactError(
                    f"{self.path}: corrupt graph shard ({exc.__class__.__name__})"
                ) from None
        n = self.count
        if (
            len(self.node_ptr) != n + 1
            or len(self.edge_ptr) != n + 1
            or any(len(v) != n for v in meta.values())
        ):
            raise ArtifactError(f"{self.path}: graph shard index does not match count={n}")
        if self.node_ptr[-1] != shapes["x"][0] or self.edge_ptr[-1] != shapes["edge_attr"][0]:
            raise ArtifactError(f"{self.path}: graph shard index does not match its arrays")
        self._maps: dict[str, np.ndarray] | None = None
        self._checked = False
        self.meta = [
            GraphMeta(**{k: meta[k][i] for k in _META_STR}, source_row=rows[i]) for i in range(n)
        ]

    def _arrays(self) -> dict[str, np.ndarray]:
        if self._maps is None:
            maps = {
                name: lay
                if isinstance(lay, np.ndarray)
                else np.memmap(self.path, dtype=lay[1], mode="r", offset=lay[0], shape=lay[2])
                for name, lay in self._layouts.items()
            }
            if not self._checked:  # the mapped bytes against their checksums, once
                for name, lay in self._layouts.items():
                    if not isinstance(lay, np.ndarray) and lay[3] is not None:
                        check_checksum(array_checksum(maps[name]), lay[3], self.path, name)
                self._checked = True
            self._maps = maps
        return self._maps

    def release(self) -> None:
        """Drop the memory maps (and their file descriptors); they come back on next use."""
        self._maps = None

    @property
    def x(self) -> np.ndarray:
        """int32 (N_total, 3)"""
        return self._arrays()["x"]

    @property
    def edge_index(self) -> np.ndarray:
        """int32 (2, E_total), local to each graph"""
        return self._arrays()["edge_index"]

    @property
    def edge_attr(self) -> np.ndarray:
        """float32 (E_total, 6)"""
        return self._arrays()["edge_attr"]

    @property
    def nf2vec(self) -> np.ndarray | None:
        """float32 (n, rows, H), or None when the shard has no nf2vec rows"""
        return self._arrays().get("nf2vec_rows")

    def __len__(self) -> int:
        return self.count

    def spec(self, i: int) -> ArchSpec:
        return self.specs[self.meta[i].arch_fingerprint]

    def graph(self, i: int) -> ParamGraph:
        if not 0 <= i < self.count:
            raise IndexError(f"graph {i} out of range for {self.path} ({self.count} graphs)")
        a, b = self.node_ptr[i : i + 2]
        c, d = self.edge_ptr[i : i + 2]
        return ParamGraph(
            x=np.array(self.x[a:b], dtype=np.int64),
            edge_index=np.array(self.edge_index[:, c:d], dtype=np.int64),
            edge_attr=np.array(self.edge_attr[c:d], dtype=np.float32),
        )

    def data(self, i: int):
        """Graph ``i`` as a ``torch_geometric.data.Data`` with its metadata attributes."""
        return self.graph(i).to_data(**data_attrs(self.meta[i]))

    def batch(self, indices: Sequence[int]):
        """Graphs ``indices`` as one ``torch_geometric.data.Batch`` (read straight from the arrays)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            raise ValueError("an empty batch")
        if idx.min() < 0 or idx.max() >= self.count:
            raise IndexError(f"graph index out of range for {self.path} ({self.count} graphs)")
        node_counts = self.node_ptr[idx + 1] - self.node_ptr[idx]
        edge_counts = self.edge_ptr[idx + 1] - self.edge_ptr[idx]
        x = np.empty((int(node_counts.sum()), 3), np.int64)
        ei = np.empty((2, int(edge_counts.sum())), np.int64)
        ea = np.empty((ei.shape[1], 6), np.float32)
        n0 = e0 = 0
        for i, nc, ec in zip(idx, node_counts, edge_counts, strict=True):
            a, c = self.node_ptr[i], self.edge_ptr[i]
            x[n0 : n0 + nc] = self.x[a : a + nc]
            np.add(self.edge_index[:, c : c + ec], n0, out=ei[:, e0 : e0 + ec], casting="unsafe")
            ea[e0 : e0 + ec] = self.edge_attr[c : c + ec]
            n0 += nc
            e0 += ec
        attrs = [data_attrs(self.meta[i]) for i in idx]
        return make_batch(x, ei, ea, node_counts, edge_counts, attrs)

    def params(self, i: int) -> dict[str, np.ndarray]:
        """The canonical weights of graph ``i`` (exact inverse of the builder)."""
        from nfkit.graphs.build import graph_to_params

        return graph_to_params(self.spec(i), self.graph(i))


def find_graph_shards(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Graph shard files under the given files/folders (recursively, ``*.h5``), sorted."""
    return find_h5_files(paths, kind=GRAPH_SHARD)


register_reader(GRAPH_SHARD, GRAPH_SHARD_VERSION, GraphShard)
