"""Graph Meta-Network encoder over parameter graphs (seed 000 §4 and Appendix B; Lim et al.).

Facts followed (SPEC §5, §10; CVLAB-Unibo/gmnerf ``gmn/``):

- pre-encoder of the raw features: ``sin(Linear(1, h))`` of each scalar (node layer, neuron
  index, edge value, edge layer), ``sin(Linear(3, h))`` of the edge position, an embedding of
  the node and edge types; concatenated and projected to ``h``;
- ``layers`` residual blocks with pre-LayerNorm, the last updating edges only::

      x̃ = LN(x), ẽ = LN(e)
      e' = ReLU(W_e [x̃_src ‖ x̃_dst ‖ ẽ])
      m_i = mean over edges j→i of ReLU(W_1 [x̃_j ‖ e'_ji])
      x' = ReLU(W_2 [x̃_i ‖ m_i])
      x += Linear(SiLU(x')),  e += Linear(SiLU(e'))

- LayerNorm + Linear on the edges, then the readout ``ReLU(Linear(h → d))`` per edge averaged
  over the graph's edges (a non-negative ``d``-dimensional embedding).

``W_e [a ‖ b ‖ c]`` is computed as ``W_a a + W_b b + W_c c`` (the same function): the node terms
are computed once per node and broadcast to the edges.

Two implementations of the same function with the same parameters:

- :meth:`GMNEncoder.forward` (sparse): any batch of graphs as a ``torch_geometric`` ``Batch``,
  gathers by ``edge_index`` and means with ``torch_geometric.utils.scatter``;
- :meth:`GMNEncoder.forward_dense`: graphs of one block-structured layout
  (``nfkit.models.blocks``) as a ``(B, n_edges)`` matrix of edge values; gathers are slices and
  means are sums along the source axis of each block. Optionally (training) a random subset of
  the sources of large blocks (tri-plane locations, hash entries) and of the readout edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfkit.graphs.schema import (
    EDGE_TYPES,
    ELAYER,
    ETYPE,
    NINDEX,
    NLAYER,
    NODE_TYPES,
    NTYPE,
    POS,
    VALUE,
)
from nfkit.models.blocks import GraphBlocks

#: room for vocabularies that grow (new node / edge types are appended, never renumbered)
TYPE_SLOTS = 16
#: room for edge layers in the value-statistics table
LAYER_SLOTS = 16
#: hash edge positions are raw (level, entry) integers; entries are scaled by 1/HASH_ENTRY_SCALE
HASH_ENTRY_SCALE = 4096.0


@dataclass(frozen=True)
class GMNSpec:
    """Sizes of the GMN encoder."""

    hidden: int = 128
    layers: int = 4
    embed_dim: int = 1024

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.layers < 1 or self.embed_dim < 1:
            raise ValueError(f"GMN sizes must be positive, got {self}")


class _SinLinear(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.lin = nn.Linear(n_in, n_out)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.lin(x))


def _edge_positions(edge_attr: Tensor) -> Tensor:
    """Edge positions with the hash entries scaled to about [0, 1). (n, 6) -> (n, 3)."""
    pos = edge_attr[..., POS].clone()
    is_hash = edge_attr[..., ETYPE] == EDGE_TYPES["hash"]
    pos[..., 1] = torch.where(is_hash, pos[..., 1] / HASH_ENTRY_SCALE, pos[..., 1])
    return pos


class PreEncoder(nn.Module):
    """Raw node / edge features -> hidden features.

    Edge values are standardised per (edge layer, edge type) with statistics of the training
    graphs (buffers ``value_mean``, ``value_std``; :meth:`set_value_stats`) before
    ``sin(Linear(1, h))``. The reference feeds raw values; measured on the demo data, an
    untrained GMN then maps NeRFs of one architecture (which share their init and differ by
    small weight changes) to embeddings whose spread across objects is 0.02 % of their norm,
    and a short CPU training never separates them.

    Shapes: node_raw (..., 3) [layer, index, type]; edge_raw (..., 6)
    [value, layer, type, pos0, pos1, pos2] -> (..., h)
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.register_buffer("value_mean", torch.zeros(LAYER_SLOTS, TYPE_SLOTS))
        self.register_buffer("value_std", torch.ones(LAYER_SLOTS, TYPE_SLOTS))
        h = hidden
        self.node_layer, self.node_index = _SinLinear(1, h), _SinLinear(1, h)
        self.node_type = nn.Embedding(TYPE_SLOTS, h)
        self.node_proj = nn.Linear(3 * h, h)
        self.edge_value, self.edge_layer = _SinLinear(1, h), _SinLinear(1, h)
        self.edge_type = nn.Embedding(TYPE_SLOTS, h)
        self.edge_pos = _SinLinear(3, h)
        self.edge_proj = nn.Linear(4 * h, h)

    def nodes(self, node_raw: Tensor) -> Tensor:
        f = node_raw.to(self.node_proj.weight.dtype)
        parts = [
            self.node_layer(f[..., NLAYER : NLAYER + 1]),
            self.node_index(f[..., NINDEX : NINDEX + 1]),
            self.node_type(node_raw[..., NTYPE].long()),
        ]
        return self.node_proj(torch.cat(parts, dim=-1))

    def edge_structure(self, edge_raw: Tensor) -> Tensor:
        """The part of the edge pre-encoding that does not depend on the value (+ the bias)."""
        h = self.edge_layer.lin.out_features
        parts = torch.cat(
            [
                self.edge_layer(edge_raw[..., ELAYER : ELAYER + 1]),
                self.edge_type(edge_raw[..., ETYPE].long()),
                self.edge_pos(_edge_positions(edge_raw)),
            ],
            dim=-1,
        )
        return F.linear(parts, self.edge_proj.weight[:, h:], self.edge_proj.bias)

    def value_stats_of(self, edge_raw: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std used for each edge's value. edge_raw (..., 6) -> (...,), (...,)"""
        layer = edge_raw[..., ELAYER].long().clamp(0, LAYER_SLOTS - 1)
        etype = edge_raw[..., ETYPE].long().clamp(0, TYPE_SLOTS - 1)
        return self.value_mean[layer, etype], self.value_std[layer, etype]

    @torch.no_grad()
    def set_value_stats(self, layer: Tensor, etype: Tensor, total: Tensor, total_sq: Tensor, count: Tensor) -> None:
        """Set the statistics from sums over training edges grouped by (layer, type); groups
        without edges fall back to their type's pooled statistics, then to (0, 1)."""
        mean = torch.zeros(LAYER_SLOTS, TYPE_SLOTS, dtype=torch.float64)
        sq = torch.zeros_like(mean)
        cnt = torch.zeros_like(mean)
        mean.index_put_((layer, etype), total.double(), accumulate=True)
        sq.index_put_((layer, etype), total_sq.double(), accumulate=True)
        cnt.index_put_((layer, etype), count.double(), accumulate=True)
        by_type = [mean.sum(0), sq.sum(0), cnt.sum(0)]
        for t_sum, t_sq, t_n in ((mean, sq, cnt),):
            empty = t_n == 0
            t_sum[empty] = by_type[0].expand_as(t_sum)[empty]
            t_sq[empty] = by_type[1].expand_as(t_sq)[empty]
            t_n[empty] = by_type[2].expand_as(t_n)[empty]
        n = cnt.clamp(min=1)
        m = mean / n
        var = (sq / n - m**2).clamp(min=0)
        std = torch.where(cnt > 1, var.sqrt(), torch.ones_like(var)).clamp(min=1e-8)
        self.value_mean.copy_(m.float())
        self.value_std.copy_(std.float())

    def edge_values(self, values: Tensor, mean: Tensor | float = 0.0, std: Tensor | float = 1.0) -> Tensor:
        """The value part of the edge pre-encoding (no bias). values (...,) -> (..., h)"""
        h = self.edge_value.lin.out_features
        v = (values - mean) / std
        return F.linear(self.edge_value(v.unsqueeze(-1)), self.edge_proj.weight[:, :h])

    def edges(self, edge_raw: Tensor) -> Tensor:
        mean, std = self.value_stats_of(edge_raw)
        return self.edge_values(edge_raw[..., VALUE], mean, std) + self.edge_structure(edge_raw)


class GMNLayer(nn.Module):
    """One pre-norm residual block: edges, then (unless ``update_nodes`` is False) nodes."""

    def __init__(self, hidden: int, update_nodes: bool = True) -> None:
        super().__init__()
        h = hidden
        self.update_nodes = update_nodes
        self.norm_x, self.norm_e = nn.LayerNorm(h), nn.LayerNorm(h)
        self.edge_mlp = nn.Linear(3 * h, h)  # [x_src ‖ x_dst ‖ e]
        self.edge_res = nn.Linear(h, h)
        if update_nodes:
            self.msg_mlp = nn.Linear(2 * h, h)  # [x_src ‖ e']
            self.node_mlp = nn.Linear(2 * h, h)  # [x ‖ m]
            self.node_res = nn.Linear(h, h)

    def _w(self, lin: nn.Linear, k: int) -> Tensor:
        h = lin.out_features
        return lin.weight[:, k * h : (k + 1) * h]

    def node_terms(self, xs: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Per-node parts of the edge and message maps: (W_src x̃, W_dst x̃, W_1,src x̃)."""
        a = xs @ self._w(self.edge_mlp, 0).T
        b = xs @ self._w(self.edge_mlp, 1).T
        p = xs @ self._w(self.msg_mlp, 0).T if self.update_nodes else None
        return a, b, p

    def edge_term(self, es: Tensor) -> Tensor:
        return F.linear(es, self._w(self.edge_mlp, 2), self.edge_mlp.bias)

    def msg_term(self, e1: Tensor) -> Tensor:
        return F.linear(e1, self._w(self.msg_mlp, 1), self.msg_mlp.bias)

    def node_update(self, x: Tensor, xs: Tensor, m: Tensor) -> Tensor:
        x1 = F.relu(self.node_mlp(torch.cat([xs, m], dim=-1)))
        return x + self.node_res(F.silu(x1))


class GMNEncoder(nn.Module):
    """Parameter graph -> embedding (seed 000 Appendix B).

    Shapes:
        forward(batch): batch.x (N, 3), batch.edge_index (2, E), batch.edge_attr (E, 6),
            batch.batch (N,) -> (n_graphs, embed_dim)
        forward_dense(values, structure, ...): values (B, E) in block order -> (B, embed_dim)
    """

    def __init__(self, spec: GMNSpec = GMNSpec()) -> None:
        super().__init__()
        self.spec = spec
        h = spec.hidden
        self.pre = PreEncoder(h)
        self.layers = nn.ModuleList(
            GMNLayer(h, update_nodes=i < spec.layers - 1) for i in range(spec.layers)
        )
        self.final_norm = nn.LayerNorm(h)
        self.final = nn.Linear(h, h)
        self.readout = nn.Linear(h, spec.embed_dim)

    # ------------------------------------------------------------------ sparse path
    def forward(self, batch) -> Tensor:
        from torch_geometric.utils import scatter

        x = self.pre.nodes(batch.x)
        e = self.pre.edges(batch.edge_attr)
        src, dst = batch.edge_index
        n = x.shape[0]
        for layer in self.layers:
            xs, es = layer.norm_x(x), layer.norm_e(e)
            a, b, p = layer.node_terms(xs)
            e1 = F.relu(a[src] + b[dst] + layer.edge_term(es))
            if layer.update_nodes:
                msg = F.relu(p[src] + layer.msg_term(e1))
                m = scatter(msg, dst, dim=0, dim_size=n, reduce="mean")
                x = layer.node_update(x, xs, m)
            e = e + layer.edge_res(F.silu(e1))
        e = self.final(self.final_norm(e))
        graph_of_edge = batch.batch[src]
        return scatter(
            F.relu(self.readout(e)), graph_of_edge, dim=0, dim_size=batch.num_graphs, reduce="mean"
        )

    # ------------------------------------------------------------------- dense path
    def forward_dense(
        self,
        values: Tensor,
        structure: DenseStructure,
        sample: DenseSample | None = None,
        readout_chunk: int = 1 << 15,
        layer_stats: bool = True,
    ) -> Tensor:
        """Embeddings of B graphs of one layout, from their edge values in block order.
        ``layer_stats=False``: the values are standardised already (per edge,
        ``nfkit.models.edge_norm``); the per-(layer, type) statistics are not applied."""
        if values.dim() != 2 or values.shape[1] != structure.n_edges:
            raise ValueError(
                f"expected edge values of shape (B, {structure.n_edges}), got {tuple(values.shape)}"
            )
        st = structure.to(values.device)
        blocks, edge_raw, in_deg = st.blocks, st.edge_raw, st.in_degree
        if sample is not None:
            values = values[:, sample.edge_index]
            edge_raw = edge_raw[sample.edge_index]
            blocks, in_deg = sample.blocks, sample.in_degree
        bsz = values.shape[0]
        x = self.pre.nodes(st.node_raw).unsqueeze(0).expand(bsz, -1, -1)
        if layer_stats:
            mean, std = self.pre.value_stats_of(edge_raw)
            e = self.pre.edge_values(values, mean[None], std[None])
        else:
            e = self.pre.edge_values(values)
        e = e + self.pre.edge_structure(edge_raw).unsqueeze(0)
        inv_deg = (1.0 / in_deg.clamp(min=1).to(x.dtype))[None, :, None]
        for layer in self.layers:
            xs, es = layer.norm_x(x), layer.norm_e(e)
            a, b, p = layer.node_terms(xs)
            e1 = _add_broadcast_(layer.edge_term(es), blocks, a, b).relu_()
            if layer.update_nodes:
                msg = _add_broadcast_(layer.msg_term(e1), blocks, p, None).relu_()
                m = _reduce(blocks, msg, x.shape[1]) * inv_deg
                x = layer.node_update(x, xs, m)
            e = e + layer.edge_res(F.silu(e1))
        e = self.final(self.final_norm(e))
        if sample is not None and sample.readout_index is not None:
            e = e[:, sample.readout_index]
        return self.mean_readout(e, readout_chunk)

    def mean_readout(self, e: Tensor, chunk: int = 1 << 15) -> Tensor:
        """``mean over edges of ReLU(readout(e))``. e (B, E, h) -> (B, embed_dim).

        Without gradients the (B, E, embed_dim) activations are never materialised: edges go
        through in cache-sized chunks (matrix product, ReLU in place, sum)."""
        bsz, n_edges, h = e.shape
        if torch.is_grad_enabled():
            total = e.new_zeros(bsz, self.spec.embed_dim)
            for start in range(0, n_edges, chunk):
                total = total + F.relu(self.readout(e[:, start : start + chunk])).sum(dim=1)
            return total / n_edges
        step = max(1, (1 << 21) // self.spec.embed_dim)  # ~8 MB of activations per chunk
        w, bias = self.readout.weight.T, self.readout.bias
        out = e.new_zeros(bsz, self.spec.embed_dim)
        buf = e.new_empty(step, self.spec.embed_dim)
        for i in range(bsz):
            for start in range(0, n_edges, step):
                part = e[i, start : start + step]
                y = torch.addmm(bias, part, w, out=buf[: part.shape[0]])
                out[i] += y.relu_().sum(dim=0)
        return out / n_edges


# ------------------------------------------------------------------------------ dense helpers
@dataclass
class DenseBlock:
    """A block for the dense path: source node ids (a range, or an index tensor when the
    sources are sampled), the target range, and where its edges start."""

    src: slice | Tensor
    n_src: int
    dst: slice
    n_dst: int
    edge_start: int


def _src_rows(t: Tensor, blk: DenseBlock) -> Tensor:
    return t[:, blk.src] if isinstance(blk.src, slice) else t.index_select(1, blk.src)


def _add_broadcast_(out: Tensor, blocks: list[DenseBlock], src_term: Tensor, dst_term: Tensor | None) -> Tensor:
    """Add to ``out`` (B, E, h), in place, each edge's source node term (+ its target node's
    term): per block a broadcast over a (n_src, n_dst) view, no gather and no concatenation."""
    bsz, _, h = out.shape
    for blk in blocks:
        view = out[:, blk.edge_start : blk.edge_start + blk.n_src * blk.n_dst].view(bsz, blk.n_src, blk.n_dst, h)
        view.add_(_src_rows(src_term, blk)[:, :, None, :])
        if dst_term is not None:
            view.add_(dst_term[:, blk.dst][:, None, :, :])
    return out


def _reduce(blocks: list[DenseBlock], msg: Tensor, n_nodes: int) -> Tensor:
    """Sum of each node's incoming edge messages. msg (B, E, h) -> (B, n_nodes, h)."""
    bsz, _, h = msg.shape
    out = msg.new_zeros(bsz, n_nodes, h)
    for blk in blocks:
        part = msg[:, blk.edge_start : blk.edge_start + blk.n_src * blk.n_dst]
        sums = part.reshape(bsz, blk.n_src, blk.n_dst, h).sum(dim=1)
        idx = torch.arange(blk.dst.start, blk.dst.stop, device=msg.device)
        out = out.index_add(1, idx, sums)
    return out


class DenseStructure:
    """Constant inputs of the dense path for one graph layout: raw node features, raw edge
    features (value column unused) in block order, blocks, in-degrees.

    Shapes: node_raw (N, 3) long, edge_raw (E, 6) float32, in_degree (N,) long
    """

    def __init__(self, node_raw: Tensor, edge_raw: Tensor, gb: GraphBlocks) -> None:
        self.node_raw = node_raw
        self.edge_raw = edge_raw
        self.graph_blocks = gb
        self.n_nodes, self.n_edges = gb.n_nodes, gb.n_edges
        self.blocks = [
            DenseBlock(
                slice(b.src_start, b.src_start + b.n_src),
                b.n_src,
                slice(b.dst_start, b.dst_start + b.n_dst),
                b.n_dst,
                b.edge_start,
            )
            for b in gb.blocks
        ]
        self.in_degree = torch.from_numpy(gb.in_degree)
        self._device = node_raw.device
        self._on: dict[str, DenseStructure] = {}

    @classmethod
    def from_graph(cls, x, edge_index, edge_attr) -> DenseStructure:
        """From one graph's numpy arrays (any graph of the layout)."""
        import numpy as np

        from nfkit.models.blocks import graph_blocks

        gb = graph_blocks(np.asarray(edge_index), int(x.shape[0]))
        node_raw = torch.as_tensor(np.asarray(x), dtype=torch.long)
        edge_raw = torch.as_tensor(np.asarray(edge_attr)[gb.perm], dtype=torch.float32).clone()
        edge_raw[:, VALUE] = 0.0
        return cls(node_raw, edge_raw, gb)

    def to(self, device: torch.device | str) -> DenseStructure:
        device = torch.device(device)
        if device == self._device:
            return self
        key = str(device)
        if key not in self._on:
            other = DenseStructure.__new__(DenseStructure)
            other.__dict__.update(self.__dict__)
            other.node_raw = self.node_raw.to(device)
            other.edge_raw = self.edge_raw.to(device)
            other.in_degree = self.in_degree.to(device)
            other._device, other._on = device, {}
            self._on[key] = other
        return self._on[key]

    def sample(
        self, max_block_edges: int, readout_edges: int, generator: torch.Generator | None = None
    ) -> DenseSample | None:
        """A random subset for one training step: of each block with more than
        ``max_block_edges`` edges, a random subset of its sources keeping at most that many
        edges (all targets of a kept source stay; 0 = all edges), and ``readout_edges`` random
        readout edges (0 = all)."""
        if max_block_edges <= 0 and readout_edges <= 0:
            return None
        blocks: list[DenseBlock] = []
        pieces: list[Tensor] = []
        pos = 0
        in_deg = torch.zeros(self.n_nodes, dtype=torch.long)
        for blk in self.blocks:
            keep = max(1, max_block_edges // blk.n_dst) if max_block_edges > 0 else blk.n_src
            if keep < blk.n_src:
                rows = torch.randperm(blk.n_src, generator=generator)[:keep].sort().values
                src = rows + blk.src.start
                n_src = keep
            else:
                rows = torch.arange(blk.n_src)
                src, n_src = blk.src, blk.n_src
            edges = blk.edge_start + rows[:, None] * blk.n_dst + torch.arange(blk.n_dst)[None, :]
            pieces.append(edges.reshape(-1))
            blocks.append(DenseBlock(src, n_src, blk.dst, blk.n_dst, pos))
            in_deg[blk.dst] += n_src
            pos += n_src * blk.n_dst
        index = torch.cat(pieces)
        readout = None
        if readout_edges > 0 and readout_edges < pos:
            readout = torch.randperm(pos, generator=generator)[:readout_edges]
        return DenseSample(index, blocks, in_deg, readout)


@dataclass
class DenseSample:
    """Which edges one training step uses (see :meth:`DenseStructure.sample`)."""

    edge_index: Tensor  # (E',) into the block-ordered edges
    blocks: list[DenseBlock]
    in_degree: Tensor  # (N,)
    readout_index: Tensor | None  # (k,) into the sampled edges, or None = all

    def to(self, device) -> DenseSample:
        blocks = [
            DenseBlock(
                b.src if isinstance(b.src, slice) else b.src.to(device), b.n_src, b.dst, b.n_dst, b.edge_start
            )
            for b in self.blocks
        ]
        return DenseSample(
            self.edge_index.to(device),
            blocks,
            self.in_degree.to(device),
            None if self.readout_index is None else self.readout_index.to(device),
        )


def encoder_flops(structure: DenseStructure, spec: GMNSpec) -> float:
    """Multiply-add FLOPs (2 per MAC) of one forward pass of one graph (dense path, all edges):
    the matrix products only (elementwise work is not counted)."""
    h, d = spec.hidden, spec.embed_dim
    n, e = structure.n_nodes, structure.n_edges
    macs = n * 3 * h * h + e * h * h  # pre-encoder projections (node 3h->h, edge value h->h)
    for i in range(spec.layers):
        update = i < spec.layers - 1
        macs += n * (2 + update) * h * h  # node terms
        macs += e * h * h * (2 if update else 1)  # W_e,edge (+ W_1,edge)
        macs += e * h * h  # edge residual
        if update:
            macs += n * 3 * h * h  # node update + residual
    macs += e * h * h + e * h * d  # final linear, readout
    return 2.0 * macs


__all__ = [
    "GMNSpec",
    "GMNEncoder",
    "GMNLayer",
    "PreEncoder",
    "DenseStructure",
    "DenseSample",
    "encoder_flops",
    "NODE_TYPES",
    "math",
]
