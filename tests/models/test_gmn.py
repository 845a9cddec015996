"""The GMN encoder: dense block path == sparse torch_geometric path; symmetries; batching."""

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from nfkit.graphs.build import graph_template, nerf_to_graph
from nfkit.graphs.schema import ParamGraph
from nfkit.losses import SigLipLoss
from nfkit.models.blocks import NotBlockStructured, graph_blocks
from nfkit.models.gmn import DenseStructure, GMNEncoder, GMNSpec, encoder_flops
from nfkit.nerf.specs import REGISTRY

from ..graphs.test_graph_permutation import permute_hidden
from ..graphs.test_graph_roundtrip import random_params


def _graphs(name: str, n: int, seed: int = 0) -> list[ParamGraph]:
    spec = REGISTRY[name]
    return [nerf_to_graph(spec, random_params(spec, seed=seed + i)) for i in range(n)]


def _dense_values(st: DenseStructure, graphs) -> torch.Tensor:
    return torch.stack([torch.from_numpy(g.edge_attr[st.graph_blocks.perm, 0].copy()) for g in graphs])


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_architecture_is_a_union_of_complete_bipartite_blocks(name):
    g = graph_template(REGISTRY[name]).graph
    gb = graph_blocks(g.edge_index, g.num_nodes)
    ei = g.edge_index[:, gb.perm]
    assert sorted(gb.perm.tolist()) == list(range(g.num_edges))
    for b in gb.blocks:
        src = ei[0, b.edge_start : b.edge_start + b.n_edges].reshape(b.n_src, b.n_dst)
        dst = ei[1, b.edge_start : b.edge_start + b.n_edges].reshape(b.n_src, b.n_dst)
        np.testing.assert_array_equal(src, b.src_start + np.arange(b.n_src)[:, None].repeat(b.n_dst, 1))
        np.testing.assert_array_equal(dst, b.dst_start + np.arange(b.n_dst)[None, :].repeat(b.n_src, 0))
    np.testing.assert_array_equal(gb.in_degree, np.bincount(g.edge_index[1], minlength=g.num_nodes))


def test_a_graph_that_is_not_block_structured_is_refused():
    edge_index = np.array([[0, 0, 1], [2, 3, 2]])  # node 1 misses target 3: not complete
    gb = graph_blocks(edge_index, 4)  # two different target sets: two blocks
    assert len(gb.blocks) == 2
    with pytest.raises(NotBlockStructured):
        graph_blocks(np.array([[0, 0], [1, 3]]), 4)  # targets 1 and 3: not a contiguous range


@pytest.mark.parametrize("name", ["mlp", "tri-16w", "hash-11t", "hash-3n"])
def test_dense_path_equals_the_sparse_path_values_and_gradients(name):
    torch.manual_seed(0)
    enc = GMNEncoder(GMNSpec(hidden=8, layers=3, embed_dim=12)).double()
    graphs = _graphs(name, 2)
    batch = Batch.from_data_list([g.to_data() for g in graphs])
    batch.edge_attr = batch.edge_attr.double()
    st = DenseStructure.from_graph(graphs[0].x, graphs[0].edge_index, graphs[0].edge_attr)
    st.edge_raw = st.edge_raw.double()
    sparse = enc(batch)
    dense = enc.forward_dense(_dense_values(st, graphs).double(), st)
    torch.testing.assert_close(dense, sparse, rtol=1e-9, atol=1e-12)
    grads = []
    for out in (sparse, dense):
        enc.zero_grad()
        (out * torch.arange(out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in enc.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-8, atol=1e-10)
    with torch.no_grad():  # the chunked no-grad readout is the same function
        torch.testing.assert_close(enc.forward_dense(_dense_values(st, graphs).double(), st), dense.detach())


def test_permuting_hidden_neurons_leaves_the_embedding_unchanged():
    spec = REGISTRY["mlp"]
    params = random_params(spec, seed=3)
    rng = np.random.default_rng(1)
    permuted = params
    for layer in range(spec.hidden_layers):
        permuted = permute_hidden(permuted, layer, rng.permutation(spec.hidden_dim))
    torch.manual_seed(0)
    enc = GMNEncoder(GMNSpec(hidden=8, layers=4, embed_dim=16)).double()
    graphs = [nerf_to_graph(spec, params), nerf_to_graph(spec, permuted)]
    batch = Batch.from_data_list([g.to_data() for g in graphs])
    batch.edge_attr = batch.edge_attr.double()
    with torch.no_grad():
        out = enc(batch)
    torch.testing.assert_close(out[0], out[1], rtol=1e-9, atol=1e-12)
    other = nerf_to_graph(spec, random_params(spec, seed=4))
    with torch.no_grad():
        b2 = Batch.from_data_list([graphs[0].to_data(), other.to_data()])
        b2.edge_attr = b2.edge_attr.double()
        assert (enc(b2)[0] - enc(b2)[1]).abs().max() > 1e-6  # a different NeRF embeds differently


def test_embedding_in_a_batch_equals_embedding_alone():
    torch.manual_seed(0)
    enc = GMNEncoder(GMNSpec(hidden=8, layers=4, embed_dim=16)).double()
    graphs = _graphs("tri-16w", 3, seed=5)
    st = DenseStructure.from_graph(graphs[0].x, graphs[0].edge_index, graphs[0].edge_attr)
    st.edge_raw = st.edge_raw.double()
    values = _dense_values(st, graphs).double()
    with torch.no_grad():
        together = enc.forward_dense(values, st)
        alone = torch.cat([enc.forward_dense(values[i : i + 1], st) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-10, atol=1e-12)


def test_sampled_edges_keep_the_layout_consistent():
    g = _graphs("tri-16w", 1)[0]
    st = DenseStructure.from_graph(g.x, g.edge_index, g.edge_attr)
    sample = st.sample(max_block_edges=16 * 64, readout_edges=100, generator=torch.Generator().manual_seed(0))
    total = sum(b.n_src * b.n_dst for b in sample.blocks)
    assert sample.edge_index.numel() == total and len(set(sample.edge_index.tolist())) == total
    assert all(b.n_src * b.n_dst <= 16 * 64 or b.n_src == 1 for b in sample.blocks)
    assert int(sample.in_degree.sum()) == total
    assert sample.readout_index.numel() == 100
    enc = GMNEncoder(GMNSpec(hidden=8, layers=2, embed_dim=8))
    out = enc.forward_dense(_dense_values(st, [g]), st, sample)
    assert out.shape == (1, 8) and torch.isfinite(out).all()


def test_flop_count_matches_a_hand_count():
    g = _graphs("mlp-32h", 1)[0]
    st = DenseStructure.from_graph(g.x, g.edge_index, g.edge_attr)
    spec = GMNSpec(hidden=4, layers=1, embed_dim=5)
    n, e, h = st.n_nodes, st.n_edges, 4
    macs = n * 3 * h * h + e * h * h + n * 2 * h * h + e * h * h + e * h * h + e * h * h + e * h * 5
    assert encoder_flops(st, spec) == 2 * macs


def test_siglip_loss_on_a_hand_computed_case():
    loss = SigLipLoss()
    u = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    v = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    # cosines: identity; logits 10*I - 10: diagonal 0, off-diagonal -10
    expect = -(2 * np.log(0.5) + 2 * np.log(1 / (1 + np.exp(-10.0)))) / 2
    assert float(loss(u, v)) == pytest.approx(expect, rel=1e-6)
    assert float(loss(u, v[[1, 0]])) > float(loss(u, v))  # misaligned pairs cost more
