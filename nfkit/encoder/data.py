"""Graphs in memory for the encoder: one block structure per architecture, the edge values of
every graph as a matrix, and the training schedule of architecture pairs.

All graphs of one architecture share their structure (``nfkit.models.blocks``), so a
:class:`GraphBank` keeps, per architecture, one :class:`~nfkit.models.gmn.DenseStructure` and
an ``(n_graphs, n_edges)`` float32 matrix of edge values in block order: a batch is a row
selection, and loading costs nothing during training. Graphs that are not block-structured
(none of nfkit's) are kept as graphs for the encoder's sparse path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nfkit.errors import IncompatibleError, UserError
from nfkit.graphs.store import GraphMeta, GraphShard, find_graph_shards
from nfkit.io.artifacts import fingerprint_path
from nfkit.models.blocks import NotBlockStructured, structure_key
from nfkit.models.gmn import DenseStructure

log = logging.getLogger(__name__)


@dataclass
class ArchGraphs:
    """The graphs of one architecture."""

    arch: str
    arch_fingerprint: str
    spec: object
    structure: DenseStructure | None
    structure_key: str
    values: np.ndarray  # (n, n_edges) float32, block order (dense) or None-equivalent empty
    meta: list[GraphMeta] = field(default_factory=list)
    sparse: list = field(default_factory=list)  # ParamGraph per row when not block-structured
    nf2vec: np.ndarray | None = None  # (n, rows, H)


class GraphBank:
    """Graphs grouped by architecture; ``items`` = (arch, row) in order of addition.

    Build one from shards with :meth:`load`, or from graphs in memory with the constructor
    (rows of ``(ParamGraph, GraphMeta, ArchSpec)``, optional nf2vec rows per graph).
    """

    def __init__(self, rows: Sequence[tuple], nf2vec: Sequence[np.ndarray] | None = None,
                 sources: dict[str, str] | None = None) -> None:
        grouped: dict[str, list] = {}
        n2v: dict[str, list[np.ndarray]] = {}
        for k, row in enumerate(rows):
            grouped.setdefault(row[1].arch, []).append(row)
            if nf2vec is not None:
                n2v.setdefault(row[1].arch, []).append(nf2vec[k])
        self.sources = dict(sources or {})
        self.archs: dict[str, ArchGraphs] = {a: _group(a, items, n2v.get(a)) for a, items in grouped.items()}
        self.items: list[tuple[str, int]] = [
            (a, r) for a, g in self.archs.items() for r in range(len(g.meta))
        ]

    @classmethod
    def load(
        cls,
        paths: str | Path | Iterable[str | Path],
        archs: Iterable[str] | None = None,
        splits: Iterable[str] | None = None,
        with_nf2vec: bool = False,
        progress: bool = False,
    ) -> GraphBank:
        """The graphs of every shard under ``paths`` (optionally only some architectures / splits)."""
        from tqdm import tqdm

        files = paths if isinstance(paths, list) and all(isinstance(p, Path) and p.is_file() for p in paths) else find_graph_shards(paths)
        if not files:
            raise UserError(f"{paths}: no graph shards found (run `nfkit build-graphs` first)")
        keep_arch = None if archs is None else {a.lower() for a in archs}
        keep_split = None if splits is None else set(splits)
        rows: list[tuple] = []
        n2v: list[np.ndarray] = []
        sources: dict[str, str] = {}
        for path in tqdm(files, desc="load graphs", unit="shard", disable=not progress, leave=False):
            shard = GraphShard(path)
            for i, m in enumerate(shard.meta):
                if keep_arch is not None and m.arch.lower() not in keep_arch:
                    continue
                if keep_split is not None and m.split not in keep_split:
                    continue
                rows.append((shard.graph(i), m, shard.spec(i)))
                if with_nf2vec:
                    if shard.nf2vec is None:
                        raise UserError(f"{path}: no nf2vec rows; rebuild the graphs with `nfkit build-graphs --nf2vec`")
                    n2v.append(np.array(shard.nf2vec[i], dtype=np.float32))
            sources[str(path)] = fingerprint_path(path)
            shard.release()
        return cls(rows, n2v if with_nf2vec else None, sources)

    def __len__(self) -> int:
        return len(self.items)

    def meta(self, arch: str, row: int) -> GraphMeta:
        return self.archs[arch].meta[row]

    def index_by_object(self) -> dict[str, dict[str, int]]:
        """``class/object_id`` -> {arch: row}."""
        out: dict[str, dict[str, int]] = {}
        for a, g in self.archs.items():
            for r, m in enumerate(g.meta):
                out.setdefault(f"{m.class_name}/{m.object_id}", {})[a] = r
        return out

    def init_fingerprints(self) -> dict[str, str]:
        """arch -> the init fingerprint of its graphs (one per architecture, or an error)."""
        out = {}
        for a, g in self.archs.items():
            fps = {m.init_fingerprint for m in g.meta}
            if len(fps) > 1:
                raise IncompatibleError(
                    f"{a}: graphs of NeRFs fitted from {len(fps)} different inits; the weights of "
                    "NeRFs from different inits are not comparable (seed 003 §VIII)"
                )
            out[a] = fps.pop()
        return out


_STRUCTURES: dict[str, DenseStructure | None] = {}


def dense_structure(graph) -> tuple[str, DenseStructure | None]:
    """The (cached) dense structure of a graph's layout, None when it is not block-structured."""
    key = structure_key(graph.x, graph.edge_index, graph.edge_attr)
    if key not in _STRUCTURES:
        try:
            _STRUCTURES[key] = DenseStructure.from_graph(graph.x, graph.edge_index, graph.edge_attr)
        except NotBlockStructured as exc:
            log.info("graph layout %s is not block-structured (%s); the sparse path is used", key, exc)
            _STRUCTURES[key] = None
    return key, _STRUCTURES[key]


def _group(arch: str, items: list, nf2vec_rows: list | None) -> ArchGraphs:
    g0, m0, spec = items[0]
    key, structure = dense_structure(g0)
    metas = []
    values = []
    sparse = []
    for g, m, _ in items:
        if structure_key(g.x, g.edge_index, g.edge_attr) != key:
            raise IncompatibleError(
                f"graphs of architecture {arch!r} with different structures (shard {m.source_shard}); "
                "were they built by different nfkit versions?"
            )
        metas.append(m)
        if structure is not None:
            values.append(g.edge_attr[structure.graph_blocks.perm, 0])
        else:
            sparse.append(g)
    vals = np.stack(values).astype(np.float32) if values else np.zeros((0, 0), np.float32)
    n2v = np.stack(nf2vec_rows) if nf2vec_rows else None
    return ArchGraphs(arch, m0.arch_fingerprint, spec, structure, key, vals, metas, sparse, n2v)


# ---------------------------------------------------------------------------- schedule
PAIR_TYPES: tuple[tuple[str, str], ...] = (("mlp", "tri"), ("tri", "hash"), ("mlp", "hash"))


def pair_schedule(
    objects: dict[str, dict[str, int]], epoch: int, seed: int, families: Sequence[str]
) -> list[tuple[str, str, str]]:
    """One epoch of (object, arch_a, arch_b): objects shuffled, the i-th gets MLP–TRI if
    i % 4 = 0, TRI–HASH if 1, MLP–HASH if 2, a random pair if 3 (the gmnerf schedule), among the
    architectures ``families`` it has. Objects present in a single architecture get (a, a)."""
    gen = np.random.default_rng([seed, epoch, 7])
    keys = sorted(objects)
    order = gen.permutation(len(keys))
    out = []
    for i, k in enumerate(order):
        key = keys[k]
        have = [a for a in families if a in objects[key]]
        if not have:
            continue
        if len(have) == 1:
            out.append((key, have[0], have[0]))
            continue
        wanted = PAIR_TYPES[i % 4] if i % 4 < 3 else None
        if wanted is not None and wanted[0] in have and wanted[1] in have:
            a, b = wanted
        else:
            a, b = gen.choice(have, size=2, replace=False).tolist()
        out.append((key, a, b))
    return out


def values_tensor(group: ArchGraphs, rows: Sequence[int], device) -> torch.Tensor:
    return torch.from_numpy(group.values[np.asarray(rows, dtype=np.int64)]).to(device)
