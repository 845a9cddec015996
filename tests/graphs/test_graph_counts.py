"""Node and edge counts equal closed forms written from the spec hyper-parameters alone."""

import math

import pytest

from nfkit.graphs.build import nerf_to_graph
from nfkit.nerf.specs import REGISTRY

from .test_graph_roundtrip import random_params


def _hash_level_entries(spec) -> list[int]:
    # tiny-cuda-nn: res_l = ceil(2^(l·log2 s)·base − 1) + 1; entries min(res³, T) rounded up to 8
    out = []
    for level in range(spec.hash_levels):
        res = math.ceil(spec.hash_per_level_scale**level * spec.hash_base_res - 1) + 1
        out.append(-(-min(res**3, 2**spec.hash_log2_size) // 8) * 8)
    return out


def closed_form(spec) -> tuple[int, int]:
    h, n_hidden, out = spec.hidden_dim, spec.hidden_layers, 4
    freq = 3 * 2 * spec.freq_bands
    if spec.family == "mlp":
        mlp_in, grid_nodes, grid_edges = freq, 0, 0
    elif spec.family == "tri":
        r, c = spec.tri_res, spec.tri_channels
        mlp_in = c + freq
        grid_nodes = 3 * r * r  # spatial nodes (channel nodes are MLP inputs, counted in mlp_in)
        grid_edges = 3 * r * r * c
    else:
        t, f, n = _hash_level_entries(spec), spec.hash_features, spec.hash_levels
        mlp_in = n * f
        grid_nodes = sum(t)
        grid_edges = sum(t) * f
    nodes = grid_nodes + mlp_in + n_hidden * h + out
    edges = grid_edges + mlp_in * h + (n_hidden - 1) * h * h + h * out
    return nodes, edges


@pytest.mark.parametrize("name", list(REGISTRY))
def test_counts_match_closed_form_at_paper_size(name):
    spec = REGISTRY[name]
    graph = nerf_to_graph(spec, random_params(spec))
    assert (graph.num_nodes, graph.num_edges) == closed_form(spec)
    assert graph.x.shape == (graph.num_nodes, 3)
    assert graph.edge_index.shape == (2, graph.num_edges)
    assert graph.edge_attr.shape == (graph.num_edges, 6)
    # one edge per parameter, no more
    assert graph.num_edges == spec.n_params()


def test_paper_numbers_and_seed_000_hash_formula():
    assert closed_form(REGISTRY["mlp"]) == (144 + 3 * 64 + 4, 144 * 64 + 2 * 64 * 64 + 64 * 4)
    assert closed_form(REGISTRY["mlp"]) == (340, 17664)
    assert closed_form(REGISTRY["tri"]) == (3572, 77056)
    assert closed_form(REGISTRY["hash"]) == (16588, 41728)
    # seed 000 Appendix A: the hash-table subgraph has N(T+F) nodes and N·T·F edges
    for name in ("hash", "hash-2l", "hash-32h", "hash-3n", "hash-11t"):
        spec = REGISTRY[name]
        n, t, f = spec.hash_levels, 2**spec.hash_log2_size, spec.hash_features
        graph = nerf_to_graph(spec, random_params(spec))
        hash_nodes = (graph.x[:, 2] >= 6).sum()  # hash_entry, hash_feature
        hash_edges = (graph.edge_attr[:, 2] == 3).sum()
        assert (hash_nodes, hash_edges) == (n * (t + f), n * t * f)
