"""Whole NeRF ↔ parameter graph, for every family (seed 000 §3, Appendix A).

The structure of a graph (nodes, edges, layers, types, positions) depends on the architecture
only; a NeRF's weights fill the value column. :func:`graph_template` builds the structure once
per architecture; :func:`nerf_to_graph` copies it and writes the values; :func:`graph_to_params`
is the exact inverse, reading each edge's position in its tensor from its endpoints (so it does
not rely on the edge order, and it checks that every parameter appears exactly once).

Node ids, in order:

- ``mlp``:  the frequency-encoding inputs (layer 0), then each linear layer's outputs
  (+ for the first, one bias node per tiny-cuda-nn padding input; + its bias node, if any).
- ``tri``:  3R² spatial nodes (layer 0), C channel nodes (layer 1), the frequency-encoding
  inputs (layer 1), then the MLP. The MLP input order is [tri-plane channels ‖ frequency
  encoding ‖ padding], the order of ``nfkit.nerf`` (tiny-cuda-nn's frequency order: per input
  dimension, per frequency, sin then cos).
- ``hash``: the entry nodes of all levels (layer 0), N·F feature nodes (layer 1), then the MLP.

The first layer's constant-1 padding inputs (``spec.n_input_padding``, tiny-cuda-nn's) are
bias nodes whose ``linear_bias`` edges carry ``mlp.0``'s padding columns (``nfkit.graphs.mlp``).

The layer counter advances past the grid: the grid's edges are layer 0, the MLP's first linear
layer is edge layer 1 (tri, hash) or 0 (mlp). Edges are listed grid first, then layer by layer,
each tensor in its row-major order (``mlp.0``: the encoding's columns, then the padding
columns).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from nfkit.graphs import hashgrid, mlp, triplane
from nfkit.graphs.schema import (
    EDGE_TYPES,
    ELAYER,
    ETYPE,
    NLAYER,
    NODE_TYPES,
    NTYPE,
    VALUE,
    GraphAssembler,
    ParamBlock,
    ParamGraph,
)
from nfkit.nerf.specs import ArchSpec

_BIAS_RE = re.compile(r"^mlp\.(\d+)\.bias$")

_FLAT_INDEX = {
    "linear": mlp.linear_flat_index,
    "bias": mlp.bias_flat_index,
    "triplane": triplane.triplane_flat_index,
    "hash": hashgrid.hash_flat_index,
}


@dataclass(frozen=True)
class GraphTemplate:
    """The value-free graph of one architecture (arrays are read-only and shared)."""

    spec: ArchSpec
    biased: tuple[int, ...]
    graph: ParamGraph
    blocks: tuple[ParamBlock, ...]

    @property
    def num_nodes(self) -> int:
        return self.graph.num_nodes

    @property
    def num_edges(self) -> int:
        return self.graph.num_edges

    def param_names(self) -> list[str]:
        """The parameter tensors of the graph, in edge order, each once (``mlp.0`` has two
        blocks where the MLP input is padded: weight edges and padding-bias edges)."""
        return list(dict.fromkeys(b.name for b in self.blocks))


def _first_mlp_layer(spec: ArchSpec) -> int:
    return 0 if spec.family == "mlp" else 1


@functools.lru_cache(maxsize=64)
def graph_template(spec: ArchSpec, biased: tuple[int, ...] = ()) -> GraphTemplate:
    """Structure of the graph of ``spec`` (with bias tensors on the linear layers ``biased``)."""
    shapes = spec.mlp_shapes()
    if spec.encoding_dim < 1:
        raise ValueError(f"{spec.name}: the MLP has no inputs (encoding_dim = 0)")
    if any(i < 0 or i >= len(shapes) for i in biased):
        raise ValueError(
            f"{spec.name}: bias on a linear layer that does not exist ({list(biased)})"
        )
    asm = GraphAssembler()
    blocks: list[ParamBlock] = []
    first = _first_mlp_layer(spec)
    if spec.family == "mlp":
        in_start = asm.add_nodes(
            spec.freq_dim, first, "neuron_input", index=np.arange(spec.freq_dim)
        )
    elif spec.family == "tri":
        in_start, block = triplane.add_triplane(asm, spec.tri_channels, spec.tri_res, layer=0)
        blocks.append(block)
        asm.add_nodes(spec.freq_dim, first, "neuron_input", index=np.arange(spec.freq_dim))
    elif spec.family == "hash":
        in_start, block = hashgrid.add_hash_grid(
            asm, spec.hash_level_sizes(), spec.hash_features, layer=0
        )
        blocks.append(block)
    else:  # pragma: no cover - ArchSpec validates the family
        raise ValueError(f"unknown family {spec.family!r}")
    blocks.extend(mlp.add_mlp(asm, in_start, shapes, first, biased, spec.n_input_padding))
    graph = asm.finish()
    for arr in (graph.x, graph.edge_index, graph.edge_attr):
        arr.flags.writeable = False
    return GraphTemplate(spec=spec, biased=tuple(biased), graph=graph, blocks=tuple(blocks))


def _biased_layers(spec: ArchSpec, params: Mapping[str, np.ndarray]) -> tuple[int, ...]:
    """Validate ``params`` against ``spec`` (+ optional ``mlp.{i}.bias``); the biased layers."""
    shapes = spec.param_shapes()
    mlp_shapes = spec.mlp_shapes()
    biased = []
    for name in params:
        if name in shapes:
            continue
        m = _BIAS_RE.match(name)
        if m is None or int(m.group(1)) >= len(mlp_shapes):
            raise ValueError(f"{spec.name}: unexpected parameter {name!r}")
        biased.append(int(m.group(1)))
    missing = [n for n in shapes if n not in params]
    if missing:
        raise ValueError(f"{spec.name}: missing parameter(s) {', '.join(missing)}")
    for name, shape in shapes.items():
        if tuple(np.shape(params[name])) != tuple(shape):
            raise ValueError(
                f"{spec.name}: parameter {name!r} has shape {tuple(np.shape(params[name]))}, expected {shape}"
            )
    for i in biased:
        want = (mlp_shapes[i][0],)
        got = tuple(np.shape(params[mlp.bias_name(i)]))
        if got != want:
            raise ValueError(
                f"{spec.name}: parameter {mlp.bias_name(i)!r} has shape {got}, expected {want}"
            )
    return tuple(sorted(biased))


def edge_values(template: GraphTemplate, params: Mapping[str, np.ndarray]) -> np.ndarray:
    """The value column of the graph of ``params`` (float32, in edge order). Shape (n_edges,)."""
    out = np.empty(template.num_edges, dtype=np.float32)
    for b in template.blocks:
        out[b.start : b.stop] = mlp.block_values(b, np.asarray(params[b.name], dtype=np.float32)).ravel()
    return out


def nerf_to_graph(spec: ArchSpec, params: Mapping[str, np.ndarray]) -> ParamGraph:
    """Parameter graph of one NeRF. ``params``: the canonical tensors of ``spec`` (float32;
    other float types are cast), plus optional ``mlp.{i}.bias`` (out_i,) tensors."""
    template = graph_template(spec, _biased_layers(spec, params))
    edge_attr = template.graph.edge_attr.copy()
    edge_attr[:, VALUE] = edge_values(template, params)
    return ParamGraph(
        x=template.graph.x.copy(), edge_index=template.graph.edge_index.copy(), edge_attr=edge_attr
    )


def graph_to_params(spec: ArchSpec, graph: ParamGraph) -> dict[str, np.ndarray]:
    """The canonical weights (float32) of a graph of ``spec``: the exact inverse of
    :func:`nerf_to_graph` (bias tensors included where the graph has bias edges)."""
    etype = graph.edge_attr[:, ETYPE]
    elayer = graph.edge_attr[:, ELAYER]
    template = graph_template(spec, _graph_bias_layers(spec, graph))
    if graph.num_nodes != template.num_nodes or graph.num_edges != template.num_edges:
        raise ValueError(
            f"graph has {graph.num_nodes} nodes / {graph.num_edges} edges; architecture "
            f"{spec.name!r} needs {template.num_nodes} / {template.num_edges}"
        )
    if not np.array_equal(graph.x, template.graph.x):
        raise ValueError(f"graph node features do not match architecture {spec.name!r}")
    src, dst = np.asarray(graph.edge_index, dtype=np.int64)
    flats: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for b in template.blocks:
        # a block's edges: its type and layer, from its source nodes (the padding columns of
        # mlp.0 and an mlp.0.bias share type and layer but not their source nodes)
        sel = np.flatnonzero(
            (etype == EDGE_TYPES[b.edge_type])
            & (elayer == b.layer)
            & (src >= b.src_start)
            & (src < b.src_start + b.n_src)
        )
        if sel.size != b.size:
            raise ValueError(f"{b.name}: graph has {sel.size} edges for {b.size} parameters")
        size = int(np.prod(b.shape))
        flat = _FLAT_INDEX[b.kind](b, src[sel], dst[sel])
        out = flats.setdefault(b.name, np.zeros(size, dtype=np.float32))
        seen = counts.setdefault(b.name, np.zeros(size, dtype=np.int64))
        seen += np.bincount(flat, minlength=size)
        out[flat] = graph.edge_attr[sel, VALUE]
    params: dict[str, np.ndarray] = {}
    for b in template.blocks:
        if b.name in params:
            continue
        if counts[b.name].max(initial=0) > 1:
            raise ValueError(f"{b.name}: two edges carry the same parameter")
        if counts[b.name].min(initial=1) < 1:  # pragma: no cover - sizes add up, so a gap implies a repeat
            raise ValueError(f"{b.name}: a parameter has no edge")
        params[b.name] = flats[b.name].reshape(b.shape)
    return params


def _graph_bias_layers(spec: ArchSpec, graph: ParamGraph) -> tuple[int, ...]:
    """Linear layers with an ``mlp.{i}.bias`` tensor: those with more bias nodes in their
    output layer than the padding inputs account for (``spec.n_input_padding`` for linear 0)."""
    n_linear = len(spec.mlp_shapes())
    first = _first_mlp_layer(spec)
    x = np.asarray(graph.x)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"graph node features must have shape (n, 3), got {x.shape}")
    linear = x[x[:, NTYPE] == NODE_TYPES["bias"], NLAYER].astype(np.int64) - first - 1
    if np.any((linear < 0) | (linear >= n_linear)):
        raise ValueError(f"graph node features do not match architecture {spec.name!r} (bias node layers)")
    per_linear = np.bincount(linear, minlength=n_linear)
    per_linear[0] -= spec.n_input_padding
    return tuple(int(i) for i in np.flatnonzero(per_linear > 0))


def graph_counts(spec: ArchSpec) -> tuple[int, int]:
    """(nodes, edges) of the graph of ``spec`` (no biases)."""
    t = graph_template(spec)
    return t.num_nodes, t.num_edges
