"""Structure of the graphs: no isolated or duplicate nodes, layers, MLP input order, hash positions."""

import numpy as np
import pytest

from nfkit.graphs.build import nerf_to_graph
from nfkit.graphs.schema import EDGE_TYPES, INDEX_UNORDERED, NODE_TYPES, POS_UNUSED
from nfkit.nerf.specs import REGISTRY, ArchSpec

from .test_graph_roundtrip import random_params


@pytest.mark.parametrize("name", list(REGISTRY))
def test_no_isolated_nodes_and_no_duplicate_ordered_nodes(name):
    spec = REGISTRY[name]
    graph = nerf_to_graph(spec, random_params(spec))
    degree = np.bincount(graph.edge_index.ravel(), minlength=graph.num_nodes)
    assert degree.min() > 0, f"{(degree == 0).sum()} isolated nodes"
    assert graph.edge_index.min() == 0 and graph.edge_index.max() == graph.num_nodes - 1
    ordered = graph.x[graph.x[:, 1] != INDEX_UNORDERED]
    assert len(np.unique(ordered, axis=0)) == len(ordered), "two ordered nodes share features"
    # directed from input to output: weight and grid edges go one layer up; bias edges (the
    # constant-1 padding inputs) stay within their outputs' layer
    src, dst = graph.edge_index
    bias = graph.edge_attr[:, 2] == EDGE_TYPES["linear_bias"]
    assert np.all(graph.x[dst[~bias], 0] == graph.x[src[~bias], 0] + 1)
    assert np.all(graph.x[dst[bias], 0] == graph.x[src[bias], 0])
    assert bias.sum() == spec.n_input_padding * spec.hidden_dim
    # no self loops, no repeated edge
    assert np.all(src != dst)
    assert len(np.unique(src * graph.num_nodes + dst)) == graph.num_edges


def test_layer_counter_advances_after_the_grid():
    for name, first in (("mlp", 0), ("tri", 1), ("hash", 1)):
        spec = REGISTRY[name]
        graph = nerf_to_graph(spec, random_params(spec))
        weight = graph.edge_attr[:, 2] == EDGE_TYPES["linear_weight"]
        assert sorted(set(graph.edge_attr[weight, 1].astype(int))) == list(
            range(first, first + spec.hidden_layers + 1)
        )
        etype = graph.edge_attr[:, 2]
        grid = (etype == EDGE_TYPES["triplane"]) | (etype == EDGE_TYPES["hash"])
        assert np.all(graph.edge_attr[grid, 1] == 0)
        assert np.all(graph.edge_attr[etype == EDGE_TYPES["linear_bias"], 1] == first)  # padding: linear 0
        assert graph.x[:, 0].max() == first + spec.hidden_layers + 1
        out = graph.x[graph.x[:, 2] == NODE_TYPES["neuron_output"]]
        np.testing.assert_array_equal(out[:, 1], [0, 1, 2, 3])


def _first_layer_columns(graph, spec):
    """Node id of each column of mlp.0, read from the edges carrying its weights."""
    first = 0 if spec.family == "mlp" else 1
    sel = (graph.edge_attr[:, 2] == EDGE_TYPES["linear_weight"]) & (graph.edge_attr[:, 1] == first)
    src = graph.edge_index[0, sel]
    in_dim = spec.encoding_dim
    return src[:in_dim]  # the first output neuron's row, in W's column order


def test_tri_mlp_inputs_are_channels_then_frequency_encoding():
    spec = ArchSpec("small-tri", "tri", tri_res=4, tri_channels=3, freq_bands=2, hidden_dim=8)
    params = random_params(spec)
    graph = nerf_to_graph(spec, params)
    cols = _first_layer_columns(graph, spec)
    types = graph.x[cols, 2]
    assert list(types) == [NODE_TYPES["triplane_channel"]] * 3 + [NODE_TYPES["neuron_input"]] * 12
    assert list(graph.x[cols[3:], 1]) == list(range(12))  # frequency inputs ordered 0..11
    assert np.all(graph.x[cols[:3], 1] == INDEX_UNORDERED)
    # channel c's node receives exactly the tri-plane values of channel c
    for c in range(3):
        into = (graph.edge_index[1] == cols[c]) & (graph.edge_attr[:, 2] == EDGE_TYPES["triplane"])
        np.testing.assert_array_equal(
            np.sort(graph.edge_attr[into, 0]), np.sort(params["triplane"][:, c].ravel())
        )


def test_hash_positions_and_mlp_inputs_level_major():
    spec = ArchSpec(
        "small-hash",
        "hash",
        hash_levels=3,
        hash_log2_size=9,
        hash_base_res=3,
        hash_per_level_scale=2.0,
        hash_features=2,
        hidden_dim=8,
    )
    sizes = spec.hash_level_sizes()
    assert sizes == [
        32,
        216,
        512,
    ]  # res 3, 6, 12: 27 -> 32 (5 padding entries), 216, 1728 -> T = 512
    params = random_params(spec)
    graph = nerf_to_graph(spec, params)
    hash_edges = graph.edge_attr[:, 2] == EDGE_TYPES["hash"]
    attr = graph.edge_attr[hash_edges]
    src, dst = graph.edge_index[:, hash_edges]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    f = spec.hash_features
    cols = _first_layer_columns(graph, spec)
    assert np.all(graph.x[cols, 2] == NODE_TYPES["hash_feature"])
    for level in range(3):
        sel = attr[:, 3] == level
        assert sel.sum() == sizes[level] * f
        entries = attr[sel, 4].astype(int)
        assert entries.min() == 0 and entries.max() == sizes[level] - 1
        assert np.all(attr[sel, 5] == POS_UNUSED)
        # value of (level, entry, feature) = hash_table[(offset + entry)·F + feature]
        feature = np.searchsorted(cols, dst[sel]) - level * f
        assert np.all((feature >= 0) & (feature < f))
        np.testing.assert_array_equal(
            attr[sel, 0], params["hash_table"][(offsets[level] + entries) * f + feature]
        )
        # entry nodes: ordered by their entry number across levels
        np.testing.assert_array_equal(graph.x[src[sel], 1], offsets[level] + entries)
    # padding entries of the dense 3³ level are included (documented choice)
    assert (graph.x[:, 2] == NODE_TYPES["hash_entry"]).sum() == sum(sizes)


@pytest.mark.parametrize("name", ["hash", "hash-3n", "tri-8c"])
def test_padding_inputs_are_bias_nodes_of_the_first_layer(name):
    spec = REGISTRY[name]
    params = random_params(spec, seed=4)
    graph = nerf_to_graph(spec, params)
    first = 0 if spec.family == "mlp" else 1
    enc, pad, h = spec.encoding_dim, spec.n_input_padding, spec.hidden_dim
    bias_nodes = np.flatnonzero(graph.x[:, 2] == NODE_TYPES["bias"])
    assert len(bias_nodes) == pad == spec.mlp_input_dim - enc
    # unordered, in the first layer's output layer, like the bias node of a bias vector
    np.testing.assert_array_equal(graph.x[bias_nodes], [[first + 1, INDEX_UNORDERED, NODE_TYPES["bias"]]] * pad)
    hidden0 = graph.x[:, 0] == first + 1
    for k, node in enumerate(bias_nodes):  # node order = padding column order
        sel = graph.edge_index[0] == node
        assert sel.sum() == h
        attr = graph.edge_attr[sel]
        assert np.all(attr[:, 1:3] == [first, EDGE_TYPES["linear_bias"]]) and np.all(attr[:, 3:] == POS_UNUSED)
        targets = graph.edge_index[1, sel]
        assert np.all(hidden0[targets]) and np.all(graph.x[targets, 2] == NODE_TYPES["neuron_hidden"])
        np.testing.assert_array_equal(attr[:, 0], params["mlp.0"][:, enc + k])
    # the encoding's columns are weight edges from the MLP's input nodes (not bias nodes)
    cols = _first_layer_columns(graph, spec)
    assert len(cols) == enc and not np.isin(cols, bias_nodes).any()
