"""Parameter-graph feature layout and type vocabularies (fixed; see ``data_specs/graph-shard-v1.md``).

A parameter graph (Lim et al., *Graph Metanetworks*; seed 000 §3 and Appendix A) has one edge
per learnable parameter. Its arrays:

- ``x``           int   (n_nodes, 3)   ``[layer, index, node_type]``
- ``edge_index``  int   (2, n_edges)   ``[source, target]``, directed input → output
- ``edge_attr``   float32 (n_edges, 6) ``[value, layer, edge_type, pos0, pos1, pos2]``

The integer codes below are part of the on-disk format: never renumber them; add new codes at
the end (and bump the ``graph-shard`` schema version if an old reader could misread a new file).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------- vocabularies (frozen)
NODE_TYPES: dict[str, int] = {
    "neuron_input": 0,  # MLP input neuron fed by the coordinate encoding (frequency encoding)
    "neuron_hidden": 1,  # hidden neuron (permutable)
    "neuron_output": 2,  # output neuron (r, g, b, sigma)
    "bias": 3,  # a constant-1 input: one per bias vector, one per tcnn padding input of mlp.0
    "triplane_spatial": 4,  # one per tri-plane location (plane, row, column)
    "triplane_channel": 5,  # one per tri-plane feature channel (an MLP input)
    "hash_entry": 6,  # one per hash-table entry (per level)
    "hash_feature": 7,  # one per feature of a level (an MLP input)
}
EDGE_TYPES: dict[str, int] = {
    "linear_weight": 0,
    "linear_bias": 1,
    "triplane": 2,
    "hash": 3,
}

#: ``x[:, 1]`` of nodes that carry no order (hidden neurons, bias nodes, tri-plane channels,
#: hash features: permuting them, with the weights, leaves the function unchanged).
INDEX_UNORDERED = -1
#: ``edge_attr[:, 3:6]`` entries that a family does not use (outside every used range:
#: tri-plane positions lie in [-1, 1], hash positions are non-negative integers).
POS_UNUSED = -2.0

NODE_FEATURES: tuple[str, ...] = ("layer", "index", "node_type")
EDGE_FEATURES: tuple[str, ...] = ("value", "layer", "edge_type", "pos0", "pos1", "pos2")

# column indices of edge_attr
VALUE, ELAYER, ETYPE, POS = 0, 1, 2, slice(3, 6)
# column indices of x
NLAYER, NINDEX, NTYPE = 0, 1, 2


def vocabulary() -> dict:
    """Everything a reader needs to interpret the integer codes (stored in every graph shard)."""
    return {
        "node_features": list(NODE_FEATURES),
        "edge_features": list(EDGE_FEATURES),
        "node_types": dict(NODE_TYPES),
        "edge_types": dict(EDGE_TYPES),
        "index_unordered": INDEX_UNORDERED,
        "pos_unused": POS_UNUSED,
    }



def vocabulary_conflict(stored: dict, current: dict | None = None) -> str | None:
    """Why a shard's stored vocabulary cannot be read with ``current`` (default: this nfkit's),
    or None when it can.

    Vocabularies grow: a stored one that is a subset of the current one (fewer node / edge
    types, a prefix of the feature columns) is readable, since every code it uses means the
    same. Refused: a name with another code, a code this nfkit does not know (a newer file),
    other feature columns, other sentinels.
    """
    current = vocabulary() if current is None else current
    try:
        for key in ("node_features", "edge_features"):
            old, new = list(stored[key]), list(current[key])
            if new[: len(old)] != old:
                return f"{key} {old} are not a prefix of {new}"
        for key in ("node_types", "edge_types"):
            old, new = dict(stored[key]), dict(current[key])
            names = {code: name for name, code in new.items()}
            for name, code in old.items():
                if name in new and new[name] != code:
                    return f"{key}: {name!r} is code {code}, here {new[name]}"
                if name not in new:
                    clash = f", here {names[code]!r}" if code in names else ""
                    return f"{key}: unknown {name!r} (code {code}{clash}; written by a newer nfkit?)"
        for key in ("index_unordered", "pos_unused"):
            if float(stored[key]) != float(current[key]):
                return f"{key} is {stored[key]}, here {current[key]}"
    except (KeyError, TypeError, ValueError) as exc:
        return f"malformed vocabulary ({exc.__class__.__name__}: {exc})"
    return None


@dataclass
class ParamGraph:
    """One parameter graph as numpy arrays.

    Shapes:
        x: (n_nodes, 3) int64, edge_index: (2, n_edges) int64, edge_attr: (n_edges, 6) float32
    """

    x: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def to_data(self, **attrs):
        """A ``torch_geometric.data.Data`` (x long, edge_index long, edge_attr float32)."""
        import torch
        from torch_geometric.data import Data

        return Data(
            x=torch.from_numpy(np.ascontiguousarray(self.x, dtype=np.int64)),
            edge_index=torch.from_numpy(np.ascontiguousarray(self.edge_index, dtype=np.int64)),
            edge_attr=torch.from_numpy(np.ascontiguousarray(self.edge_attr, dtype=np.float32)),
            num_nodes=self.num_nodes,
            **attrs,
        )


@dataclass(frozen=True)
class ParamBlock:
    """Where one parameter tensor (or a column range of it) lives in a graph template.

    Its values are ``edge_attr[start:stop, 0]`` in the tensor's row-major (C) order (for a
    ``linear`` block: of the columns ``extra[2] : extra[2] + extra[3]``); its edges have type
    ``edge_type`` and layer ``layer`` and leave the ``n_src`` source nodes from ``src_start``;
    ``kind`` names the family function that maps an edge's (source, target) back to the flat
    position of its value in the whole tensor (used by the inverse).
    """

    name: str
    shape: tuple[int, ...]
    kind: str  # "linear" | "bias" | "triplane" | "hash"
    edge_type: str
    layer: int
    start: int
    stop: int
    src_start: int  # first node id of the source block
    dst_start: int  # first node id of the target block
    n_src: int  # number of source nodes (ids src_start .. src_start + n_src - 1)
    extra: tuple[int, ...] = ()  # family-specific sizes (see the family modules)

    @property
    def size(self) -> int:
        return self.stop - self.start


class GraphAssembler:
    """Accumulates blocks of nodes and edges; node ids are handed out in order of addition."""

    def __init__(self) -> None:
        self._x: list[np.ndarray] = []
        self._src: list[np.ndarray] = []
        self._dst: list[np.ndarray] = []
        self._attr: list[np.ndarray] = []
        self.num_nodes = 0
        self.num_edges = 0

    def add_nodes(
        self, count: int, layer: int, node_type: str, index: np.ndarray | None = None
    ) -> int:
        """Add ``count`` nodes; returns the id of the first. ``index=None`` = unordered."""
        x = np.empty((count, 3), dtype=np.int64)
        x[:, NLAYER] = layer
        x[:, NINDEX] = INDEX_UNORDERED if index is None else index
        x[:, NTYPE] = NODE_TYPES[node_type]
        self._x.append(x)
        start = self.num_nodes
        self.num_nodes += count
        return start

    def add_edges(
        self,
        src: np.ndarray,
        dst: np.ndarray,
        layer: int,
        edge_type: str,
        pos: np.ndarray | None = None,
    ) -> tuple[int, int]:
        """Add edges (value column left at 0); returns their [start, stop) range.

        Shapes: src, dst: (n,); pos: (n, k) with k <= 3 (the rest is ``POS_UNUSED``).
        """
        n = int(src.shape[0])
        attr = np.zeros((n, 6), dtype=np.float32)
        attr[:, ELAYER] = layer
        attr[:, ETYPE] = EDGE_TYPES[edge_type]
        attr[:, POS] = POS_UNUSED
        if pos is not None:
            attr[:, 3 : 3 + pos.shape[1]] = pos
        self._src.append(np.asarray(src, dtype=np.int64))
        self._dst.append(np.asarray(dst, dtype=np.int64))
        self._attr.append(attr)
        start = self.num_edges
        self.num_edges += n
        return start, self.num_edges

    def finish(self) -> ParamGraph:
        x = np.concatenate(self._x) if self._x else np.zeros((0, 3), np.int64)
        if self._src:
            edge_index = np.stack([np.concatenate(self._src), np.concatenate(self._dst)])
            edge_attr = np.concatenate(self._attr)
        else:
            edge_index = np.zeros((2, 0), np.int64)
            edge_attr = np.zeros((0, 6), np.float32)
        return ParamGraph(x=x, edge_index=edge_index, edge_attr=edge_attr)
