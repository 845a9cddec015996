"""Permuting neurons along a symmetry of the network leaves the graph's edge multiset unchanged."""

import numpy as np
import pytest

from nfkit.graphs.build import nerf_to_graph
from nfkit.graphs.mlp import mlp_forward
from nfkit.nerf.specs import REGISTRY

from .test_graph_roundtrip import random_params


def edge_multiset(graph) -> np.ndarray:
    """Rows [edge_attr ‖ x[source] ‖ x[target]], sorted: the graph up to node relabelling of
    nodes that carry no order."""
    src, dst = graph.edge_index
    rows = np.concatenate(
        [
            graph.edge_attr.astype(np.float64),
            graph.x[src].astype(np.float64),
            graph.x[dst].astype(np.float64),
        ],
        axis=1,
    )
    return rows[np.lexsort(rows.T[::-1])]


def permute_hidden(params, layer: int, perm: np.ndarray) -> dict:
    """Permute the outputs of linear ``layer`` (a hidden layer) and the inputs of the next."""
    out = {k: v.copy() for k, v in params.items()}
    out[f"mlp.{layer}"] = params[f"mlp.{layer}"][perm, :]
    out[f"mlp.{layer + 1}"] = params[f"mlp.{layer + 1}"][:, perm]
    return out


def test_hidden_permutation_keeps_function_and_edge_multiset():
    spec = REGISTRY["mlp"]
    params = random_params(spec, seed=7)
    rng = np.random.default_rng(0)
    permuted = params
    for layer in range(spec.hidden_layers):
        permuted = permute_hidden(permuted, layer, rng.permutation(spec.hidden_dim))
    weights = [params[f"mlp.{i}"] for i in range(spec.hidden_layers + 1)]
    weights_p = [permuted[f"mlp.{i}"] for i in range(spec.hidden_layers + 1)]
    assert not all(np.array_equal(a, b) for a, b in zip(weights, weights_p, strict=True))
    inputs = rng.uniform(-1, 1, size=(256, spec.encoding_dim))
    np.testing.assert_allclose(
        mlp_forward(weights_p, inputs), mlp_forward(weights, inputs), rtol=1e-9, atol=1e-9
    )
    a = edge_multiset(nerf_to_graph(spec, params))
    b = edge_multiset(nerf_to_graph(spec, permuted))
    np.testing.assert_array_equal(a, b)


def test_a_permutation_that_changes_the_function_changes_the_multiset():
    spec = REGISTRY["mlp-2l"]
    params = random_params(spec, seed=1)
    swapped = {k: v.copy() for k, v in params.items()}
    swapped["mlp.0"] = params["mlp.0"][:, ::-1].copy()  # reorder the (ordered) input neurons
    inputs = np.random.default_rng(0).uniform(-1, 1, size=(64, spec.encoding_dim))
    w = [params[f"mlp.{i}"] for i in range(3)]
    w_s = [swapped[f"mlp.{i}"] for i in range(3)]
    assert not np.allclose(mlp_forward(w, inputs), mlp_forward(w_s, inputs))
    assert not np.array_equal(
        edge_multiset(nerf_to_graph(spec, params)), edge_multiset(nerf_to_graph(spec, swapped))
    )
    # and so does permuting the ordered output neurons
    out = {k: v.copy() for k, v in params.items()}
    out["mlp.2"] = params["mlp.2"][[1, 0, 2, 3]]
    assert not np.array_equal(
        edge_multiset(nerf_to_graph(spec, params)), edge_multiset(nerf_to_graph(spec, out))
    )


@pytest.mark.parametrize("name", ["tri-16w", "hash-11t"])
def test_grid_symmetries_keep_the_edge_multiset(name):
    spec = REGISTRY[name]
    params = random_params(spec, seed=2)
    rng = np.random.default_rng(5)
    moved = permute_hidden(params, 1, rng.permutation(spec.hidden_dim))
    if spec.family == "tri":
        # permute tri-plane channels together with the MLP's first columns
        perm = rng.permutation(spec.tri_channels)
        moved["triplane"] = params["triplane"][:, perm]
        w0 = moved["mlp.0"].copy()
        w0[:, : spec.tri_channels] = moved["mlp.0"][:, perm]
        moved["mlp.0"] = w0
    else:
        # swap the two features of level 0, in the table and in the MLP's first columns
        f = spec.hash_features
        n0 = spec.hash_level_sizes()[0] * f
        table = moved["hash_table"].copy()
        table[:n0] = params["hash_table"][:n0].reshape(-1, f)[:, ::-1].ravel()
        moved["hash_table"] = table
        w0 = moved["mlp.0"].copy()
        w0[:, :f] = moved["mlp.0"][:, :f][:, ::-1]
        moved["mlp.0"] = w0
    np.testing.assert_array_equal(
        edge_multiset(nerf_to_graph(spec, params)), edge_multiset(nerf_to_graph(spec, moved))
    )


@pytest.mark.parametrize("name", ["hash-3n", "tri-8c"])
def test_permuting_the_padding_inputs_keeps_function_and_edge_multiset(name):
    """tcnn's padding inputs are all 1: permuting them (with mlp.0's padding columns) is a
    symmetry, so their bias nodes carry no order and the graph does not change."""
    spec = REGISTRY[name]
    params = random_params(spec, seed=3)
    enc, n_in = spec.encoding_dim, spec.mlp_input_dim
    perm = np.random.default_rng(1).permutation(n_in - enc)
    moved = {k: v.copy() for k, v in params.items()}
    moved["mlp.0"][:, enc:] = params["mlp.0"][:, enc:][:, perm]
    assert not np.array_equal(moved["mlp.0"], params["mlp.0"])
    rng = np.random.default_rng(2)
    inputs = np.concatenate([rng.uniform(-1, 1, size=(64, enc)), np.ones((64, n_in - enc))], axis=1)
    w = [params[f"mlp.{i}"] for i in range(spec.hidden_layers + 1)]
    w_m = [moved[f"mlp.{i}"] for i in range(spec.hidden_layers + 1)]
    np.testing.assert_allclose(
        mlp_forward(w_m, inputs, spec.activation), mlp_forward(w, inputs, spec.activation), rtol=1e-9, atol=1e-9
    )
    np.testing.assert_array_equal(
        edge_multiset(nerf_to_graph(spec, params)), edge_multiset(nerf_to_graph(spec, moved))
    )
    # whereas moving a weight between an encoding column and a padding column changes both
    swapped = {k: v.copy() for k, v in params.items()}
    swapped["mlp.0"][:, [enc - 1, enc]] = params["mlp.0"][:, [enc, enc - 1]]
    assert not np.allclose(mlp_forward([swapped["mlp.0"], *w[1:]], inputs, spec.activation), mlp_forward(w, inputs, spec.activation))
    assert not np.array_equal(
        edge_multiset(nerf_to_graph(spec, params)), edge_multiset(nerf_to_graph(spec, swapped))
    )
