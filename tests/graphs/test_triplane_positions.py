"""Each tri-plane edge carries exactly the position of the value it carries."""

import numpy as np
import pytest
import torch

from nfkit.graphs.build import nerf_to_graph
from nfkit.graphs.schema import EDGE_TYPES
from nfkit.nerf.specs import REGISTRY, ArchSpec

from .test_graph_roundtrip import random_params


def expected_location(p, r, s, res):
    """Written from the layout alone: value [p, c, r, s] of planes (xy, xz, yz) sampled with
    grid_sample(align_corners=True), grid coordinate 0 along s, 1 along r."""
    u_s = -1 + 2 * s / (res - 1)
    u_r = -1 + 2 * r / (res - 1)
    zero = np.zeros_like(u_s)
    xyz = {0: (u_s, u_r, zero), 1: (u_s, zero, u_r), 2: (zero, u_s, u_r)}
    return np.stack(
        [np.select([p == k for k in range(3)], [xyz[k][a] for k in range(3)]) for a in range(3)],
        axis=1,
    )


def location_coded_params(spec):
    """A tri-plane whose value at [p, c, r, s] is its own flat index (exact in float32)."""
    params = random_params(spec)
    n = int(np.prod(spec.param_shapes()["triplane"]))
    params["triplane"] = np.arange(n, dtype=np.float32).reshape(spec.param_shapes()["triplane"])
    return params


def tri_edge_errors(spec, edge_index, edge_attr) -> dict:
    """For a location-coded tri-plane: how many tri-plane edges carry a position, a source
    (spatial node) or a target (channel node) other than those of the value they carry."""
    c_, r_ = spec.tri_channels, spec.tri_res
    tri = edge_attr[:, 2] == EDGE_TYPES["triplane"]
    code = edge_attr[tri, 0].astype(np.int64)
    p, rest = np.divmod(code, c_ * r_ * r_)
    c, rs = np.divmod(rest, r_ * r_)
    r, s = np.divmod(rs, r_)
    src, dst = edge_index[:, tri]
    return {
        "edges": int(tri.sum()),
        "position": int(
            (
                ~np.isclose(edge_attr[tri, 3:6], expected_location(p, r, s, r_), atol=1e-6).all(
                    axis=1
                )
            ).sum()
        ),
        "source": int((src != p * r_ * r_ + rs).sum()),
        "target": int((dst - dst.min() != c).sum()),
    }


def reference_style_graph(spec):
    """The public reference's construction (gmnerf ``triplanar_to_graph`` + ``make_edge_attr``),
    transcribed to nfkit's plane order: edges listed spatial-major (location k // C -> channel
    k % C) while values and positions are flattened channel-major, and positions laid out with
    the plane's first axis along the rows r."""
    c_, r_ = spec.tri_channels, spec.tri_res
    values = location_coded_params(spec)["triplane"]
    u = np.linspace(-1, 1, r_)
    pos = np.zeros((3, c_, r_, r_, 3))
    for plane, (a0, a1) in enumerate(((0, 1), (0, 2), (1, 2))):
        pos[plane, :, :, :, a0] = u[:, None]
        pos[plane, :, :, :, a1] = u[None, :]
    k = np.arange(values.size)
    edge_index = np.stack([k // c_, 3 * r_ * r_ + k % c_])
    attr = np.zeros((values.size, 6), np.float32)
    attr[:, 0] = values.ravel()
    attr[:, 2] = EDGE_TYPES["triplane"]
    attr[:, 3:6] = pos.reshape(-1, 3)
    return edge_index, attr


@pytest.mark.parametrize(
    "spec",
    [
        REGISTRY["tri"],
        REGISTRY["tri-8c"],
        ArchSpec("tiny", "tri", tri_res=3, tri_channels=2, freq_bands=1),
    ],
)
def test_every_edge_carries_the_position_and_endpoints_of_its_value(spec):
    graph = nerf_to_graph(spec, location_coded_params(spec))
    errors = tri_edge_errors(spec, graph.edge_index, graph.edge_attr)
    assert errors == {
        "edges": 3 * spec.tri_res**2 * spec.tri_channels,
        "position": 0,
        "source": 0,
        "target": 0,
    }
    # seed 000: i = 0 on the yz plane, j = 0 on xz, k = 0 on xy; positions span [-1, 1]
    tri = graph.edge_attr[:, 2] == EDGE_TYPES["triplane"]
    pos = graph.edge_attr[tri, 3:6]
    plane = graph.edge_index[0, tri] // spec.tri_res**2
    for p, axis in ((0, 2), (1, 1), (2, 0)):
        assert np.all(pos[plane == p, axis] == 0)
        assert np.all(np.delete(pos[plane == p], axis, axis=1) != 0) or spec.tri_res % 2 == 1
    assert pos.min() == -1 and pos.max() == 1


def test_the_reference_construction_fails_this_check():
    spec = ArchSpec("tiny", "tri", tri_res=4, tri_channels=3, freq_bands=1)
    errors = tri_edge_errors(spec, *reference_style_graph(spec))
    total = errors["edges"]
    assert errors["source"] > total // 2 and errors["target"] > total // 2
    assert errors["position"] > total // 2


def test_positions_agree_with_the_forward_pass_sampler():
    """Sampling the tri-plane (nfkit.nerf.encodings) at an edge's position returns its value."""
    encodings = pytest.importorskip("nfkit.nerf.encodings")
    spec = ArchSpec("tiny", "tri", tri_res=5, tri_channels=4, freq_bands=1)
    params = random_params(spec, seed=11)
    graph = nerf_to_graph(spec, params)
    tri = np.flatnonzero(graph.edge_attr[:, 2] == EDGE_TYPES["triplane"])
    src, dst = graph.edge_index[:, tri]
    chan = dst - dst.min()
    planes = torch.from_numpy(params["triplane"]).double()[None]  # (1, 3, C, R, R)
    for k in np.random.default_rng(0).choice(tri.size, 40, replace=False):
        only = torch.zeros_like(planes)
        p = src[k] // spec.tri_res**2
        only[0, p] = planes[0, p]  # keep the edge's plane only
        g = torch.from_numpy(graph.edge_attr[tri[k], 3:6].astype(np.float64)).view(1, 1, 3)
        feat = encodings.triplane_features(only, g)[0, 0]
        assert feat[chan[k]].item() == pytest.approx(float(graph.edge_attr[tri[k], 0]), abs=1e-6)
