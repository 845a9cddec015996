"""Metrics on small hand-made cases with known answers."""

import math

import numpy as np
import pytest

from nfkit.eval.metrics import (
    accuracy,
    average_precision_at_k,
    confusion_matrix,
    count_relevant,
    hit_rate_at_k,
    map_at_k,
    per_class_accuracy,
    precision_at_k,
    relevance,
    retrieval_scores,
)


def test_accuracy_and_confusion():
    pred = np.array([0, 1, 1, 2, 2, 2])
    true = np.array([0, 1, 2, 2, 2, 0])
    assert accuracy(pred, true) == pytest.approx(4 / 6)
    m = confusion_matrix(pred, true, 3)
    assert m.tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 2]]  # rows true, columns predicted
    assert per_class_accuracy(m)[[0, 1, 2]] == pytest.approx([0.5, 1.0, 2 / 3])
    assert math.isnan(accuracy(np.array([]), np.array([])))
    with pytest.raises(ValueError, match="labels must lie"):
        confusion_matrix(np.array([3]), np.array([0]), 3)


def test_per_class_accuracy_absent_class_is_nan():
    m = confusion_matrix(np.array([0, 0]), np.array([0, 0]), 2)
    acc = per_class_accuracy(m)
    assert acc[0] == 1.0 and math.isnan(acc[1])


def test_relevance_pads_and_labels():
    ranked = np.array([[2, 0, -1], [1, -1, -1]])
    rel = relevance(ranked, np.array(["a", "b"]), np.array(["a", "b", "a"]))
    assert rel.tolist() == [[True, True, False], [True, False, False]]
    with pytest.raises(ValueError, match="outside a gallery"):
        relevance(np.array([[5]]), np.array(["a"]), np.array(["a"]))


def test_hit_rate_precision_map_known_values():
    # query 0: relevant at ranks 2 and 3 of 3 relevant; query 1: relevant at rank 1 of 1
    rel = np.array([[0, 1, 1, 0], [1, 0, 0, 0]], bool)
    n_rel = np.array([3, 1])
    assert hit_rate_at_k(rel, 1) == 0.5
    assert hit_rate_at_k(rel, 2) == 1.0
    assert precision_at_k(rel, 1) == 0.5
    assert precision_at_k(rel, 4) == pytest.approx((2 / 4 + 1 / 4) / 2)
    ap = average_precision_at_k(rel, 4, n_rel)
    # AP@4 of q0 = (1/2 + 2/3) / min(4, 3); q1 = 1
    assert ap == pytest.approx([(1 / 2 + 2 / 3) / 3, 1.0])
    assert map_at_k(rel, 4, n_rel) == pytest.approx(((1 / 2 + 2 / 3) / 3 + 1) / 2)
    # AP@2: denominator min(2, R)
    assert average_precision_at_k(rel, 2, n_rel) == pytest.approx([(1 / 2) / 2, 1.0])


def test_k_larger_than_gallery():
    # a gallery of 2: the ranking holds 2 columns; k = 10 uses both, precision divides by 2
    ranked = np.array([[1, 0]])
    s = retrieval_scores(ranked, np.array(["a"]), np.array(["b", "a"]), ks=(1, 10))
    assert s["hit@1"] == 1.0 and s["hit@10"] == 1.0
    assert s["precision@10"] == 0.5
    assert s["map@10"] == 1.0


def test_query_whose_only_match_is_itself():
    # gallery = queries = [a, b, b]; query 0 (class a) has only itself, which is excluded
    labels = np.array(["a", "b", "b"])
    ranked = np.array([[1, 2], [2, 0], [1, 0]])  # self excluded from every row
    excl = np.arange(3)
    assert count_relevant(labels, labels, excl).tolist() == [0, 1, 1]
    miss = retrieval_scores(ranked, labels, labels, ks=(1, 2), exclude=excl)
    assert miss["hit@1"] == pytest.approx(2 / 3) and miss["no_match"] == 1.0
    assert miss["map@1"] == 1.0  # mAP leaves the unmatched query out
    skip = retrieval_scores(ranked, labels, labels, ks=(1, 2), exclude=excl, unmatched="skip")
    assert skip["hit@1"] == 1.0 and skip["n_queries"] == 2.0


def test_tied_distances_rank_by_index_then_metric():
    # ties are resolved by the search (lower gallery index first); the metric reads that order
    from nfkit.eval.search import knn

    gallery = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)  # rows 0 and 1 tie
    res = knn(gallery, np.array([[1.0, 0.0]], np.float32), k=1)
    assert res.index.tolist() == [[0]]
    s = retrieval_scores(res.index, np.array(["y"]), np.array(["x", "y", "z"]), ks=(1,))
    assert s["hit@1"] == 0.0  # the tie goes to row 0 ("x") deterministically
    res2 = knn(gallery, np.array([[1.0, 0.0]], np.float32), k=2)
    assert retrieval_scores(res2.index, np.array(["y"]), np.array(["x", "y", "z"]), ks=(2,))["hit@2"] == 1.0


def test_invalid_inputs():
    with pytest.raises(ValueError, match="k must be"):
        hit_rate_at_k(np.zeros((1, 1), bool), 0)
    with pytest.raises(ValueError, match="unmatched"):
        retrieval_scores(np.array([[0]]), np.array([1]), np.array([1]), unmatched="drop")
