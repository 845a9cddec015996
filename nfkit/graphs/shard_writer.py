"""Graph shards, writing: many parameter graphs in one HDF5 artifact.

Layout (kind ``graph-shard``, schema v1; documented in ``data_specs/graph-shard-v1.md``)::

    /                     root attrs: nfkit_* header, count, vocabulary (JSON), arch_specs (JSON
                                      fingerprint -> spec), source_shard, source_size,
                                      source_mtime_ns, nf2vec_width (0 = none)
    /node_ptr             int64 (n+1,)           graph g owns nodes node_ptr[g]:node_ptr[g+1]
    /edge_ptr             int64 (n+1,)           ... and edges edge_ptr[g]:edge_ptr[g+1]
    /x                    int32 (N_total, 3)     [layer, index, node_type]
    /edge_index           int32 (2, E_total)     local node ids of each graph (not offset)
    /edge_attr            float32 (E_total, 6)   [value, layer, edge_type, pos0, pos1, pos2]
    /nf2vec_rows          float32 (n, rows, H)   optional
    /meta/<key>           str (n,) for object_id, class_name, split, arch, arch_fingerprint,
                                      init_fingerprint, source_shard; int64 (n,) source_row

The big arrays are contiguous (unchunked) so that readers memory-map them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import h5py
import numpy as np

from nfkit.graphs.schema import ParamGraph, vocabulary
from nfkit.io.artifacts import register_kind, write_artifact
from nfkit.nerf.specs import ArchSpec

GRAPH_SHARD = "graph-shard"
GRAPH_SHARD_VERSION = 1
register_kind(GRAPH_SHARD, GRAPH_SHARD_VERSION)

_STR = h5py.string_dtype("utf-8")


@dataclass
class GraphMeta:
    """Where a graph came from."""

    object_id: str
    class_name: str
    split: str
    arch: str
    arch_fingerprint: str
    init_fingerprint: str
    source_shard: str = ""
    source_row: int = -1  # row of the NeRF in its source shard


_META_STR = tuple(f.name for f in fields(GraphMeta) if f.name != "source_row")


class GraphShardWriter:
    """Write graphs one by one into preallocated arrays of a new graph shard (atomically).

    ``with GraphShardWriter(path, n_graphs, n_nodes, n_edges, specs) as w: w.add(graph, meta)``;
    the file appears at ``path`` only when exactly ``n_graphs`` graphs were added. Graphs are
    buffered and written in blocks of about ``FLUSH_EDGES`` edges.
    """

    FLUSH_EDGES = 1 << 21

    def __init__(
        self,
        path: str | Path,
        n_graphs: int,
        n_nodes: int,
        n_edges: int,
        specs: Iterable[ArchSpec],
        nf2vec_shape: tuple[int, int] | None = None,
        config: dict | None = None,
        inputs: dict[str, str] | None = None,
        attrs: dict | None = None,
        input_paths: dict[str, list] | None = None,
    ) -> None:
        if n_graphs < 1:
            raise ValueError("no graphs to write")
        self.path = Path(path)
        self.n_graphs, self.n_nodes, self.n_edges = n_graphs, n_nodes, n_edges
        self.specs = {s.fingerprint(): s.to_dict() for s in specs}
        self.nf2vec_shape = nf2vec_shape
        self.config, self.inputs, self.attrs = config, inputs, dict(attrs or {})
        self.input_paths = input_paths
        self._count = self._node = self._edge = 0
        self._node_ptr = np.zeros(n_graphs + 1, np.int64)
        self._edge_ptr = np.zeros(n_graphs + 1, np.int64)
        self._meta: list[GraphMeta] = []
        self._buf: list[tuple] = []
        self._buf_edges = 0

    def __enter__(self) -> GraphShardWriter:
        self._ctx = write_artifact(
            self.path, GRAPH_SHARD, GRAPH_SHARD_VERSION, self.config, self.inputs, self.input_paths
        )
        f = self._f = self._ctx.__enter__()
        f.create_dataset("x", shape=(self.n_nodes, 3), dtype=np.int32)
        f.create_dataset("edge_index", shape=(2, self.n_edges), dtype=np.int32)
        f.create_dataset("edge_attr", shape=(self.n_edges, 6), dtype=np.float32)
        if self.nf2vec_shape is not None:
            f.create_dataset(
                "nf2vec_rows", shape=(self.n_graphs, *self.nf2vec_shape), dtype=np.float32
            )
        return self

    def add(self, graph: ParamGraph, meta: GraphMeta, nf2vec: np.ndarray | None = None) -> None:
        if self._count >= self.n_graphs:
            raise ValueError(f"more graphs than announced ({self.n_graphs})")
        if meta.arch_fingerprint not in self.specs:
            raise ValueError(f"graph of architecture {meta.arch!r} not among the shard's specs")
        n, e = graph.num_nodes, graph.num_edges
        if self._node + n > self.n_nodes or self._edge + e > self.n_edges:
            raise ValueError("graphs larger than announced")
        if self.nf2vec_shape is not None and (
            nf2vec is None or tuple(nf2vec.shape) != tuple(self.nf2vec_shape)
        ):
            raise ValueError(f"nf2vec rows of shape {self.nf2vec_shape} expected for every graph")
        # buffered: h5py's per-call overhead (~1 ms) would dominate small graphs
        self._buf.append(
            (
                graph.x.astype(np.int32),
                graph.edge_index.astype(np.int32),
                np.array(graph.edge_attr, dtype=np.float32),
                nf2vec,
            )
        )
        self._buf_edges += e
        self._node += n
        self._edge += e
        self._count += 1
        self._node_ptr[self._count] = self._node
        self._edge_ptr[self._count] = self._edge
        self._meta.append(meta)
        if self._buf_edges >= self.FLUSH_EDGES:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        f = self._f
        first = self._count - len(self._buf)
        a, b = self._node_ptr[first], self._node_ptr[self._count]
        c, d = self._edge_ptr[first], self._edge_ptr[self._count]
        f["x"][a:b] = np.concatenate([t[0] for t in self._buf])
        f["edge_index"][:, c:d] = np.concatenate([t[1] for t in self._buf], axis=1)
        f["edge_attr"][c:d] = np.concatenate([t[2] for t in self._buf])
        if self.nf2vec_shape is not None:
            f["nf2vec_rows"][first : self._count] = np.stack([t[3] for t in self._buf])
        self._buf, self._buf_edges = [], 0

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:  # the artifact context removes the temporary file
            return bool(self._ctx.__exit__(exc_type, exc, tb))
        try:
            self._finish()
        except BaseException as err:
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise
        self._ctx.__exit__(None, None, None)
        return False

    def _finish(self) -> None:
        if self._count != self.n_graphs or self._node != self.n_nodes or self._edge != self.n_edges:
            raise ValueError(
                f"graph shard {self.path}: wrote {self._count} graphs / {self._node} nodes / "
                f"{self._edge} edges, announced {self.n_graphs} / {self.n_nodes} / {self.n_edges}"
            )
        self._flush()
        f = self._f
        f.create_dataset("node_ptr", data=self._node_ptr)
        f.create_dataset("edge_ptr", data=self._edge_ptr)
        m = f.create_group("meta")
        for key in _META_STR:
            m.create_dataset(key, data=[str(getattr(g, key)) for g in self._meta], dtype=_STR)
        m.create_dataset("source_row", data=np.array([g.source_row for g in self._meta], np.int64))
        f.attrs["count"] = self.n_graphs
        f.attrs["vocabulary"] = json.dumps(vocabulary(), sort_keys=True)
        f.attrs["arch_specs"] = json.dumps(self.specs, sort_keys=True)
        f.attrs["nf2vec_width"] = int(self.nf2vec_shape[1]) if self.nf2vec_shape else 0
        for k, v in self.attrs.items():
            f.attrs[k] = v


def write_graph_shard(
    path: str | Path,
    graphs: Sequence[ParamGraph],
    metas: Sequence[GraphMeta],
    specs: Iterable[ArchSpec],
    nf2vec: Sequence[np.ndarray] | None = None,
    config: dict | None = None,
    inputs: dict[str, str] | None = None,
    attrs: dict | None = None,
) -> Path:
    """Write a list of graphs (any architectures among ``specs``) as one graph shard."""
    if len(graphs) != len(metas):
        raise ValueError("one GraphMeta per graph is needed")
    shape = tuple(nf2vec[0].shape) if nf2vec is not None and len(nf2vec) else None
    with GraphShardWriter(
        path,
        len(graphs),
        sum(g.num_nodes for g in graphs),
        sum(g.num_edges for g in graphs),
        specs,
        shape,
        config,
        inputs,
        attrs,
    ) as w:
        for i, (g, m) in enumerate(zip(graphs, metas, strict=True)):
            w.add(g, m, None if nf2vec is None else nf2vec[i])
    return Path(path)
