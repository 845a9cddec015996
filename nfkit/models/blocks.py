"""Parameter graphs as unions of complete bipartite blocks (the GMN's dense fast path).

Every parameter graph nfkit builds is a union of complete bipartite blocks between contiguous
node ranges: each linear layer (inputs → outputs, a bias node → outputs, the padding bias
nodes → outputs), the tri-plane (3R² spatial nodes → C channels) and each hash level (its T
entries → its F features). Every graph of one architecture has the same structure; only the
edge values differ. With the edges of each block laid out source-major, a block's edge features
are a ``(n_src, n_dst, h)`` view, gathers of node features are slices broadcast along one axis
and the mean over a node's incoming edges is a sum along the source axis: no index arithmetic.

:func:`graph_blocks` discovers the blocks from a graph's ``edge_index`` alone (so it also works
for architectures added later), and refuses a graph that is not such a union; the encoder
then falls back to its sparse (torch_geometric) path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Block:
    """Edges ``src_start + i → dst_start + j`` for all i < n_src, j < n_dst, stored at
    ``edge_start + i·n_dst + j`` of the block-ordered edge arrays."""

    src_start: int
    n_src: int
    dst_start: int
    n_dst: int
    edge_start: int

    @property
    def n_edges(self) -> int:
        return self.n_src * self.n_dst


@dataclass(frozen=True)
class GraphBlocks:
    """The block structure of one graph layout.

    ``perm`` reorders the graph's edges into block order (``edge_attr[perm]``); ``in_degree``
    counts each node's incoming edges.

    Shapes: perm (n_edges,) int64, in_degree (n_nodes,) int64
    """

    n_nodes: int
    n_edges: int
    blocks: tuple[Block, ...]
    perm: np.ndarray
    in_degree: np.ndarray


class NotBlockStructured(ValueError):
    """The graph is not a union of complete bipartite blocks between contiguous node ranges."""


def _runs(sorted_ids: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of consecutive integers in a sorted array, as (start, length)."""
    if sorted_ids.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(sorted_ids) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [sorted_ids.size]])
    return [(int(sorted_ids[a]), int(b - a)) for a, b in zip(starts, ends, strict=True)]


def graph_blocks(edge_index: np.ndarray, n_nodes: int) -> GraphBlocks:
    """Decompose a graph into complete bipartite blocks; raises :class:`NotBlockStructured`.

    Sources with the same set of targets form a group; each contiguous run of such sources,
    with their (contiguous) target range, is one block.

    Shapes: edge_index (2, n_edges) integer
    """
    src = np.asarray(edge_index[0], dtype=np.int64)
    dst = np.asarray(edge_index[1], dtype=np.int64)
    n_edges = src.size
    order = np.lexsort((dst, src))  # by source, then target
    s_sorted, d_sorted = src[order], dst[order]
    bounds = np.flatnonzero(np.diff(s_sorted)) + 1
    starts = np.concatenate([[0], bounds]) if n_edges else np.zeros(0, np.int64)
    ends = np.concatenate([bounds, [n_edges]]) if n_edges else np.zeros(0, np.int64)
    # signature of each source's target set
    groups: dict[bytes, list[int]] = {}
    targets: dict[bytes, tuple[int, int]] = {}
    for a, b in zip(starts, ends, strict=True):
        t = d_sorted[a:b]
        if t[-1] - t[0] + 1 != t.size or np.any(np.diff(t) != 1):
            raise NotBlockStructured(f"node {int(s_sorted[a])}: its targets are not one contiguous range")
        key = hashlib.blake2b(t.tobytes(), digest_size=16).digest()
        groups.setdefault(key, []).append(int(s_sorted[a]))
        targets[key] = (int(t[0]), int(t.size))
    first_edge = {int(s_sorted[a]): int(a) for a in starts}
    blocks: list[Block] = []
    pieces: list[np.ndarray] = []
    pos = 0
    for key, sources in groups.items():
        d0, nd = targets[key]
        for s0, ns in _runs(np.array(sorted(sources), dtype=np.int64)):
            blocks.append(Block(s0, ns, d0, nd, pos))
            # edges of consecutive sources are consecutive in the (src, dst)-sorted order
            a = first_edge[s0]
            pieces.append(order[a : a + ns * nd])
            pos += ns * nd
    blocks.sort(key=lambda b: b.edge_start)
    perm = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
    if perm.size != n_edges:
        raise NotBlockStructured("edges outside the blocks")
    in_degree = np.bincount(dst, minlength=n_nodes).astype(np.int64)
    return GraphBlocks(n_nodes, n_edges, tuple(blocks), perm, in_degree)


def structure_key(x: np.ndarray, edge_index: np.ndarray, edge_attr: np.ndarray) -> str:
    """Fingerprint of everything of a graph except its edge values (equal for all graphs of
    one architecture)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(x, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(edge_index, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(edge_attr[:, 1:], dtype=np.float32).tobytes())
    return h.hexdigest()
