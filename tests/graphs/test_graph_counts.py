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
        enc, grid_nodes, grid_edges = freq, 0, 0
    elif spec.family == "tri":
        r, c = spec.tri_res, spec.tri_channels
        enc = c + freq
        grid_nodes = 3 * r * r  # spatial nodes (channel nodes are MLP inputs, counted in enc)
        grid_edges = 3 * r * r * c
    else:
        t, f, n = _hash_level_entries(spec), spec.hash_features, spec.hash_levels
        enc = n * f
        grid_nodes = sum(t)
        grid_edges = sum(t) * f
    pad = -(-enc // 16) * 16 - enc  # tiny-cuda-nn's constant-1 inputs: one bias node each
    nodes = grid_nodes + enc + pad + n_hidden * h + out
    edges = grid_edges + (enc + pad) * h + (n_hidden - 1) * h * h + h * out
    return nodes, edges


#: (nodes, edges) of the 13 registered architectures (data_specs/graph-shard-v1.md)
PAPER_COUNTS = {
    "mlp": (340, 17664),
    "tri": (3572, 77056),
    "hash": (16596, 42240),
    "mlp-2l": (276, 13568),
    "mlp-32h": (244, 6784),
    "tri-2l": (3508, 72960),
    "tri-32h": (3476, 61056),
    "tri-16w": (1268, 40192),
    "tri-8c": (3572, 52480),
    "hash-2l": (16532, 38144),
    "hash-32h": (16500, 35456),
    "hash-3n": (12500, 34048),
    "hash-11t": (8404, 25856),
}


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
    # hash: 4·4096 entries + 8 features + 8 padding (bias) nodes + 3·64 + 4
    assert closed_form(REGISTRY["hash"]) == (16384 + 8 + 8 + 192 + 4, 32768 + 16 * 64 + 2 * 64 * 64 + 64 * 4)
    assert {name: closed_form(spec) for name, spec in REGISTRY.items()} == PAPER_COUNTS
    # seed 000 Appendix A: the hash-table subgraph has N(T+F) nodes and N·T·F edges
    for name in ("hash", "hash-2l", "hash-32h", "hash-3n", "hash-11t"):
        spec = REGISTRY[name]
        n, t, f = spec.hash_levels, 2**spec.hash_log2_size, spec.hash_features
        graph = nerf_to_graph(spec, random_params(spec))
        hash_nodes = (graph.x[:, 2] >= 6).sum()  # hash_entry, hash_feature
        hash_edges = (graph.edge_attr[:, 2] == 3).sum()
        assert (hash_nodes, hash_edges) == (n * (t + f), n * t * f)
