"""Generation metrics on hand-made sets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from nfkit.eval.generation import (
    QualityRow,
    coverage,
    frechet_distance,
    gaussian_floor,
    measure,
    minimum_matching_distance,
    pairwise_distance,
    quality_markdown,
    shrunk_covariance,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(12, 5))


@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_identical_sets_cover_everything_at_zero_distance(distance):
    assert coverage(X, X, distance) == 1.0
    assert minimum_matching_distance(X, X, distance) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(X, X) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(X, X, shrinkage=0.3) == pytest.approx(0.0, abs=1e-8)


def test_collapsed_generator_covers_one_real_point():
    # every generated row sits on real row 3: coverage 1/12, MMD = mean distance to row 3
    gen = np.repeat(X[3:4], 20, axis=0)
    assert coverage(gen, X, "l2") == pytest.approx(1 / 12)
    expect = np.linalg.norm(X - X[3], axis=1).mean()
    assert minimum_matching_distance(gen, X, "l2") == pytest.approx(expect)


def test_shifted_set_mmd_and_frechet_mean_term():
    shift = np.zeros(5)
    shift[0] = 10.0
    # shifting far along one axis: every generated row's nearest real row is the one it came from
    # only if the shift is small; here MMD is at least the shift minus the set's spread
    assert minimum_matching_distance(X + shift, X, "l2") > 10.0 - 2 * np.abs(X).max()
    # same covariance, means 10 apart: FD = |Δμ|² exactly (the trace terms cancel)
    assert frechet_distance(X, X + shift, shrinkage=0.0) == pytest.approx(100.0, rel=1e-9)
    assert frechet_distance(X, X + shift) == pytest.approx(100.0, rel=1e-6)


def test_frechet_of_known_gaussians():
    # covariances I and 4I (shrinkage 1: tr(S)/D·I exactly): FD = D·(1 + 4 − 2·2) = D
    a = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]])
    assert frechet_distance(a, 2 * a, shrinkage=1.0) == pytest.approx(2 * (0.5 + 2 - 2 * 1.0))


def test_cosine_distance_ignores_scale_l2_does_not():
    assert pairwise_distance(X, 3 * X, "cosine").diagonal() == pytest.approx(0.0, abs=1e-12)
    assert pairwise_distance(X, 3 * X, "l2").diagonal() == pytest.approx(2 * np.linalg.norm(X, axis=1))
    with pytest.raises(ValueError, match="expected one of"):
        pairwise_distance(X, X, "manhattan")


def test_ledoit_wolf_is_regular_with_fewer_rows_than_dimensions():
    x = RNG.normal(size=(6, 40))
    _, cov = shrunk_covariance(x)
    assert np.linalg.eigvalsh(cov).min() > 0
    _, raw = shrunk_covariance(x, 0.0)
    assert np.linalg.matrix_rank(raw) <= 6


def test_gaussian_floor_matches_moments_and_is_seeded():
    train = RNG.normal(loc=3.0, scale=0.5, size=(50, 4))
    a, b = gaussian_floor(train, 4000, seed=1), gaussian_floor(train, 4000, seed=1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a.mean(0), train.mean(0), atol=0.05)
    np.testing.assert_allclose(a.std(0), train.std(0), rtol=0.1)


def test_measure_and_table():
    row = measure("chair", "generated", X, X, accuracy=0.5)
    assert isinstance(row, QualityRow) and row.coverage == 1.0 and row.n == row.n_reference == 12
    md = quality_markdown([row, measure("chair", "noise (floor)", X + 5, X)], "cosine")
    assert "| chair | generated | 12 | 50.0 | 100.0 |" in md and "**mean**" in md and "n/a" in md
