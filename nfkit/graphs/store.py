"""Graph shards: many parameter graphs in one HDF5 artifact, and fast loading to torch_geometric.

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
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import h5py
import numpy as np

from nfkit.graphs.schema import ParamGraph, vocabulary
from nfkit.io.artifacts import (
    ArtifactError,
    find_h5_files,
    open_artifact,
    register_kind,
    write_artifact,
)
from nfkit.nerf.specs import ArchSpec

log = logging.getLogger(__name__)

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
    ) -> None:
        if n_graphs < 1:
            raise ValueError("no graphs to write")
        self.path = Path(path)
        self.n_graphs, self.n_nodes, self.n_edges = n_graphs, n_nodes, n_edges
        self.specs = {s.fingerprint(): s.to_dict() for s in specs}
        self.nf2vec_shape = nf2vec_shape
        self.config, self.inputs, self.attrs = config, inputs, dict(attrs or {})
        self._count = self._node = self._edge = 0
        self._node_ptr = np.zeros(n_graphs + 1, np.int64)
        self._edge_ptr = np.zeros(n_graphs + 1, np.int64)
        self._meta: list[GraphMeta] = []
        self._buf: list[tuple] = []
        self._buf_edges = 0

    def __enter__(self) -> GraphShardWriter:
        self._ctx = write_artifact(
            self.path, GRAPH_SHARD, GRAPH_SHARD_VERSION, self.config, self.inputs
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


# ---------------------------------------------------------------------------- reading
_ARRAYS = ("x", "edge_index", "edge_attr", "nf2vec_rows")


def _layout(f: h5py.File, name: str, path: Path, file_size: int):
    """(offset, dtype, shape) of a contiguous dataset to memory-map, or its data when the
    dataset cannot be mapped (chunked, compressed or empty)."""
    ds = f[name]
    offset = ds.id.get_offset()
    if offset is None or ds.chunks is not None or ds.size == 0:
        return ds[()]
    if offset + ds.size * ds.dtype.itemsize > file_size:
        raise ArtifactError(
            f"{path}: graph shard is truncated ({name} ends past the end of the file)"
        )
    return (offset, ds.dtype, ds.shape)


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
                stored = json.loads(f.attrs["vocabulary"])
                if stored != json.loads(json.dumps(vocabulary())):
                    raise ArtifactError(
                        f"{self.path}: graph vocabulary differs from graph-shard v1"
                    )
                self.specs = {
                    fp: ArchSpec.from_dict(d) for fp, d in json.loads(f.attrs["arch_specs"]).items()
                }
                self.attrs = {k: f.attrs[k] for k in f.attrs if not k.startswith("nfkit_")}
                self.node_ptr = f["node_ptr"][()].astype(np.int64)
                self.edge_ptr = f["edge_ptr"][()].astype(np.int64)
                size = self.path.stat().st_size
                self._layouts = {
                    name: _layout(f, name, self.path, size) for name in _ARRAYS if name in f
                }
                shapes = {n: f[n].shape for n in self._layouts}
                meta = {k: _decode(f["meta"][k][()]) for k in _META_STR}
                rows = f["meta"]["source_row"][()].astype(np.int64).tolist()
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
        self.meta = [
            GraphMeta(**{k: meta[k][i] for k in _META_STR}, source_row=rows[i]) for i in range(n)
        ]

    def _arrays(self) -> dict[str, np.ndarray]:
        if self._maps is None:
            self._maps = {
                name: lay
                if isinstance(lay, np.ndarray)
                else np.memmap(self.path, dtype=lay[1], mode="r", offset=lay[0], shape=lay[2])
                for name, lay in self._layouts.items()
            }
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
        return self.graph(i).to_data(**_data_attrs(self.meta[i]))

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
        attrs = [_data_attrs(self.meta[i]) for i in idx]
        return _make_batch(x, ei, ea, node_counts, edge_counts, attrs)

    def params(self, i: int) -> dict[str, np.ndarray]:
        """The canonical weights of graph ``i`` (exact inverse of the builder)."""
        from nfkit.graphs.build import graph_to_params

        return graph_to_params(self.spec(i), self.graph(i))


def _data_attrs(meta: GraphMeta) -> dict:
    d = asdict(meta)
    d.pop("arch_fingerprint")
    d.pop("init_fingerprint")
    return d


def _make_batch(x, edge_index, edge_attr, node_counts, edge_counts, attrs: list[dict]):
    """Assemble a Batch from already concatenated (and offset) numpy arrays, as
    ``Batch.from_data_list`` would (``to_data_list`` and ``get_example`` work on it)."""
    import torch
    from torch_geometric.data import Batch

    n = len(attrs)
    zeros = torch.zeros(n, dtype=torch.long)
    node_ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(node_counts)]).astype(np.int64))
    edge_ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(edge_counts)]).astype(np.int64))
    lists = {k: [a[k] for a in attrs] for k in attrs[0]}
    source_row = torch.tensor([int(v) for v in lists.pop("source_row")], dtype=torch.long)
    batch_vec = np.repeat(np.arange(n, dtype=np.int64), node_counts)
    batch = Batch(
        x=torch.from_numpy(x),
        edge_index=torch.from_numpy(edge_index),
        edge_attr=torch.from_numpy(edge_attr),
        source_row=source_row,
        batch=torch.from_numpy(batch_vec),
        ptr=node_ptr,
        **lists,
    )
    batch._num_graphs = n
    batch._slice_dict = {
        "x": node_ptr,
        "edge_index": edge_ptr,
        "edge_attr": edge_ptr,
        "source_row": torch.arange(n + 1),
        **{k: torch.arange(n + 1) for k in lists},
    }
    batch._inc_dict = {
        "x": zeros,
        "edge_index": node_ptr[:-1].clone(),
        "edge_attr": zeros,
        "source_row": zeros,
        **{k: None for k in lists},
    }
    return batch


def collate_graphs(data_list: Sequence):
    """Collate ``Data`` graphs (from :class:`GraphDataset`) into a ``Batch``.

    Equivalent to ``Batch.from_data_list`` on these graphs, and faster: one numpy
    concatenation per array with the node offsets added in place (numpy also sidesteps torch's
    intra-op threads, which make ``torch.cat`` crawl on an oversubscribed CPU).
    """
    if not data_list:
        raise ValueError("an empty batch")
    if any(d.x.device.type != "cpu" or d.edge_attr.requires_grad for d in data_list):
        from torch_geometric.data import Batch

        return Batch.from_data_list(list(data_list))
    node_counts = np.array([d.num_nodes for d in data_list], dtype=np.int64)
    edge_counts = np.array([d.edge_index.shape[1] for d in data_list], dtype=np.int64)
    x = np.concatenate([d.x.numpy() for d in data_list])
    edge_attr = np.concatenate([d.edge_attr.numpy() for d in data_list])
    edge_index = np.concatenate([d.edge_index.numpy() for d in data_list], axis=1)
    edge_index += np.repeat(np.cumsum(node_counts) - node_counts, edge_counts)
    keys = [
        f.name for f in fields(GraphMeta) if f.name not in ("arch_fingerprint", "init_fingerprint")
    ]
    attrs = [{k: d[k] for k in keys} for d in data_list]
    return _make_batch(x, edge_index, edge_attr, node_counts, edge_counts, attrs)


def find_graph_shards(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Graph shard files under the given files/folders (recursively, ``*.h5``), sorted."""
    return find_h5_files(paths, kind=GRAPH_SHARD)


class GraphDataset:
    """A ``torch.utils.data.Dataset`` of the graphs of many shards, yielding ``Data`` objects.

    ``archs`` keeps only graphs of those architecture names. Use :func:`collate_graphs` as the
    DataLoader's ``collate_fn`` (or :meth:`loader`). Shards are memory-mapped, so worker
    processes share the page cache; at most ``max_open`` shards stay mapped at a time.
    """

    def __init__(
        self,
        paths: str | Path | Iterable[str | Path],
        archs: Iterable[str] | None = None,
        max_open: int = 64,
    ) -> None:
        self.shards = [GraphShard(p) for p in find_graph_shards(paths)]
        self.max_open = max(1, int(max_open))
        self._open: OrderedDict[int, None] = OrderedDict()
        keep = None if archs is None else {a.lower() for a in archs}
        self.items: list[tuple[int, int]] = [
            (s, i)
            for s, shard in enumerate(self.shards)
            for i, m in enumerate(shard.meta)
            if keep is None or m.arch.lower() in keep
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        s, i = self.items[k]
        self._open[s] = None
        self._open.move_to_end(s)
        if len(self._open) > self.max_open:
            self.shards[self._open.popitem(last=False)[0]].release()
        return self.shards[s].data(i)

    def meta(self, k: int) -> GraphMeta:
        s, i = self.items[k]
        return self.shards[s].meta[i]

    def loader(self, batch_size: int = 8, shuffle: bool = False, **kwargs):
        """A ``torch.utils.data.DataLoader`` over this dataset collating with :func:`collate_graphs`."""
        from torch.utils.data import DataLoader

        return DataLoader(
            self, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_graphs, **kwargs
        )
