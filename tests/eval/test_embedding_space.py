import numpy as np
import pytest

from nfkit.eval.embedding_space import arch_knn_accuracy, cross_arch_class_knn, knn_predict, spread_ratio


def test_knn_votes_nearest_first_on_ties_and_caps_k():
    g = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = ["a", "b", "c"]
    q = np.array([[1.0, 0.05]])
    assert knn_predict(g, labels, q, k=2).tolist() == ["a"]  # a/b tie: the nearer wins
    assert knn_predict(g, labels, q, k=10).tolist() == ["a"]  # k larger than the gallery
    ex = np.array([[True, True, True]])
    assert knn_predict(g, labels, q, k=1, exclude=ex).tolist() == [""]  # nothing allowed


def test_architecture_and_cross_architecture_class_accuracy():
    rng = np.random.default_rng(0)
    classes = np.repeat(["x", "y", "z"], 8)
    # "R-like": clustered by architecture, class signal only within an architecture
    archs = np.tile(np.repeat(["mlp", "tri"], 4), 3)
    cls_dir = {"x": [5, 0, 0, 0], "y": [0, 5, 0, 0], "z": [0, 0, 5, 0]}
    by_arch = np.array([cls_dir[c] for c in classes], float)
    by_arch[archs == "tri"] = np.roll(by_arch[archs == "tri"], 1, axis=1)  # tri's classes elsewhere
    by_arch[:, 3] += np.where(archs == "mlp", 20.0, -20.0)
    by_arch += rng.normal(0, 0.3, by_arch.shape)
    assert arch_knn_accuracy(by_arch, archs, k=3) == 1.0
    assert cross_arch_class_knn(by_arch, classes, archs, k=3) < 0.5
    # "R+C-like": the same class in both architectures shares a direction
    shared = np.array([cls_dir[c] for c in classes], float) + rng.normal(0, 0.3, (24, 4))
    assert cross_arch_class_knn(shared, classes, archs, k=3) == 1.0
    assert arch_knn_accuracy(shared, archs, k=3) < 0.8
    # masks: only mlp queries, only tri answers
    m = archs == "mlp"
    assert cross_arch_class_knn(shared, classes, archs, 3, query_mask=m, gallery_mask=~m) == 1.0


def test_spread_ratio():
    x = np.array([[10.0, 0.0], [10.0, 0.0]])
    assert spread_ratio(x) == 0.0
    assert spread_ratio(np.array([[9.0, 0.0], [11.0, 0.0]])) == pytest.approx(0.1)
