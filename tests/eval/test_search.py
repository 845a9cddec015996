"""Exact search against a float64 brute force, ties, exclusion, k > gallery."""

import numpy as np
import pytest

from nfkit.eval.search import ExactIndex, brute_force, knn


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_matches_brute_force(metric):
    rng = np.random.default_rng(1)
    g = rng.normal(size=(700, 24)).astype(np.float32)
    q = rng.normal(size=(53, 24)).astype(np.float32)
    for exclude in (None, rng.integers(-1, 700, size=53)):
        got = ExactIndex(g, metric).search(q, 9, exclude=exclude, chunk=16)
        want = brute_force(g, q, 9, metric, exclude=exclude)
        assert (got.index == want.index).all()
        assert np.allclose(got.distance, want.distance, atol=1e-4)
        if exclude is not None:
            assert not (got.index == exclude[:, None]).any()


def test_self_search_excluding_self():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    res = knn(x, x, 3, "l2", exclude=np.arange(30))
    assert (res.index != np.arange(30)[:, None]).all()
    assert (res.index == brute_force(x, x, 3, "l2", exclude=np.arange(30)).index).all()


def test_ties_at_the_boundary_go_to_lower_index():
    g = np.array([[0, 1], [1, 0], [1, 0], [1, 0], [0, 1]], np.float32)
    res = knn(g, np.array([[1, 0]], np.float32), 2, "l2")
    assert res.index.tolist() == [[1, 2]]
    res = knn(g, np.array([[1, 0]], np.float32), 4, "cosine")
    assert res.index.tolist() == [[1, 2, 3, 0]]
    assert res.distance[0, :3] == pytest.approx([0, 0, 0])


def test_k_larger_than_gallery_and_exclusion_pad():
    g = np.eye(3, dtype=np.float32)
    res = knn(g, g, 10, "cosine", exclude=np.arange(3))
    assert res.index.shape == (3, 3)
    assert (res.index[:, -1] == -1).all() and np.isinf(res.distance[:, -1]).all()
    assert sorted(res.index[0, :2].tolist()) == [1, 2]


def test_bad_shapes():
    idx = ExactIndex(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"queries must be \(n, 3\)"):
        idx.search(np.zeros((1, 2), np.float32), 1)
    with pytest.raises(ValueError, match="unknown distance"):
        ExactIndex(np.zeros((4, 3)), "dot")
