"""weights -> graph -> weights is exact (bitwise) for every family, biases included."""

import numpy as np
import pytest

from nfkit.graphs.build import graph_to_params, nerf_to_graph
from nfkit.graphs.schema import ParamGraph
from nfkit.nerf.specs import REGISTRY, ArchSpec


def random_params(spec, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in spec.param_shapes().items()}


def assert_same_params(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == np.float32 and a[k].shape == b[k].shape
        # bitwise: compare the raw bytes (NaN, -0.0 and denormals included)
        assert a[k].tobytes() == np.asarray(b[k], np.float32).tobytes(), k


@pytest.mark.parametrize("name", list(REGISTRY))
def test_round_trip_is_bitwise_for_every_architecture(name):
    spec = REGISTRY[name]
    params = random_params(spec, seed=len(name))
    # awkward float32 values must survive too
    first = next(iter(params))
    params[first].flat[:4] = [np.float32(-0.0), np.float32(1e-45), np.float32(3.4e38), np.nan]
    back = graph_to_params(spec, nerf_to_graph(spec, params))
    assert_same_params(back, params)


def test_round_trip_with_biases_on_a_synthetic_mlp():
    spec = ArchSpec("biased", "mlp", hidden_layers=2, hidden_dim=5, freq_bands=1)
    assert (spec.encoding_dim, spec.mlp_input_dim) == (6, 16)  # 10 constant-1 padding inputs
    params = random_params(spec)
    rng = np.random.default_rng(1)
    for i, (out, _) in enumerate(spec.mlp_shapes()):
        params[f"mlp.{i}.bias"] = rng.standard_normal(out).astype(np.float32)
    graph = nerf_to_graph(spec, params)
    x, (src, dst), attr = graph.x, graph.edge_index, graph.edge_attr
    bias_nodes = np.flatnonzero(x[:, 2] == 3)
    # 10 padding inputs of linear 0, then one bias node per biased linear layer
    assert len(bias_nodes) == 10 + 3
    assert list(np.bincount(x[bias_nodes, 0])) == [0, 10 + 1, 1, 1]
    vectors = [bias_nodes[10], bias_nodes[11], bias_nodes[12]]  # node order: padding first
    for i, node in enumerate(vectors):
        sel = src == node
        assert sel.sum() == spec.mlp_shapes()[i][0]
        assert np.all(attr[sel, 2] == 1)  # linear_bias edges
        assert np.all(x[dst[sel], 0] == x[node, 0])  # the bias node sits in its outputs' layer
        np.testing.assert_array_equal(attr[sel, 0], params[f"mlp.{i}.bias"])
    for k, node in enumerate(bias_nodes[:10]):
        sel = src == node
        np.testing.assert_array_equal(attr[sel, 0], params["mlp.0"][:, 6 + k])
    assert graph.num_nodes == 6 + 5 + 10 + 5 + 4 + 3
    assert graph.num_edges == spec.n_params() + 5 + 5 + 4
    assert_same_params(graph_to_params(spec, graph), params)
    # only some layers biased, linear 0 (which also has the padding bias nodes) among them or not
    for keep in ((1,), (0,), (0, 2), ()):
        some = {k: v for k, v in params.items() if not k.endswith(".bias") or int(k.split(".")[1]) in keep}
        graph = nerf_to_graph(spec, some)
        assert (graph.x[:, 2] == 3).sum() == 10 + len(keep)
        assert_same_params(graph_to_params(spec, graph), some)


def test_inverse_reads_endpoints_not_edge_order():
    spec = REGISTRY["tri-16w"]
    params = random_params(spec, seed=3)
    graph = nerf_to_graph(spec, params)
    perm = np.random.default_rng(0).permutation(graph.num_edges)
    shuffled = ParamGraph(graph.x, graph.edge_index[:, perm], graph.edge_attr[perm])
    assert_same_params(graph_to_params(spec, shuffled), params)


def test_inverse_rejects_graphs_that_are_not_of_the_architecture():
    spec = REGISTRY["hash-11t"]
    graph = nerf_to_graph(spec, random_params(spec))
    with pytest.raises(ValueError, match="nodes"):
        graph_to_params(REGISTRY["hash"], graph)
    # an edge rewired onto another level's feature node
    bad = ParamGraph(graph.x, graph.edge_index.copy(), graph.edge_attr)
    bad.edge_index[1, 0] += spec.hash_features
    with pytest.raises(ValueError, match="another level"):
        graph_to_params(spec, bad)
    # two edges carrying the same weight
    bad = ParamGraph(graph.x, graph.edge_index.copy(), graph.edge_attr)
    last = graph.num_edges - 1
    bad.edge_index[:, last] = bad.edge_index[:, last - 1]
    with pytest.raises(ValueError, match="same parameter"):
        graph_to_params(spec, bad)


def test_builder_validates_parameters():
    spec = REGISTRY["mlp-32h"]
    params = random_params(spec)
    with pytest.raises(ValueError, match="missing"):
        nerf_to_graph(spec, {k: v for k, v in params.items() if k != "mlp.1"})
    with pytest.raises(ValueError, match="shape"):
        nerf_to_graph(spec, {**params, "mlp.0": params["mlp.0"].T})
    with pytest.raises(ValueError, match="unexpected"):
        nerf_to_graph(spec, {**params, "triplane": params["mlp.1"]})
    with pytest.raises(ValueError, match="mlp.0.bias"):
        nerf_to_graph(spec, {**params, "mlp.0.bias": np.zeros(3, np.float32)})
