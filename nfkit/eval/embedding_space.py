"""What an embedding space says about architectures and classes (seed 000 §4.1, Fig. 3).

Two numbers that say what the t-SNE picture shows:

- :func:`arch_knn_accuracy`: k-NN (leave-one-out) accuracy of predicting the **architecture**
  of an embedding from its neighbours. With ``L_R`` the seeds' embeddings cluster by
  architecture (≈ 100 %); with ``L_R+C`` / ``L_C`` they should not (near chance: 1/#archs).
- :func:`cross_arch_class_knn`: k-NN accuracy of predicting the **class** of a query from
  neighbours of the *other* architectures only: how well class information transfers across
  architectures (far better with the contrastive term).

Both use cosine similarity (the geometry SigLIP trains).
"""

from __future__ import annotations

import numpy as np


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _vote(labels: np.ndarray) -> str:
    """Most frequent label; ties go to the label of the nearest neighbour among the tied."""
    values, counts = np.unique(labels, return_counts=True)
    best = set(values[counts == counts.max()].tolist())
    for lab in labels:  # labels are ordered nearest first
        if lab in best:
            return lab
    return labels[0]  # pragma: no cover


def knn_predict(gallery: np.ndarray, gallery_labels, queries: np.ndarray, k: int,
                exclude: np.ndarray | None = None) -> np.ndarray:
    """Majority label of the k most cosine-similar gallery rows per query.

    ``exclude`` (nq, ng) bool marks gallery rows a query may not use (itself, its own
    architecture). Shapes: gallery (ng, d), queries (nq, d) -> (nq,) labels
    """
    g, q = _normalise(gallery), _normalise(queries)
    labels = np.asarray(gallery_labels).astype(str)
    sim = q @ g.T
    if exclude is not None:
        sim = np.where(exclude, -np.inf, sim)
    out = []
    for row in sim:
        allowed = np.isfinite(row)
        if not allowed.any():
            out.append("")
            continue
        kk = min(k, int(allowed.sum()))
        idx = np.argsort(-row, kind="stable")[:kk]
        out.append(_vote(labels[idx]))
    return np.array(out, dtype=object)


def arch_knn_accuracy(emb: np.ndarray, archs, k: int = 5) -> float:
    """Leave-one-out k-NN accuracy of the architecture label."""
    archs = np.asarray(archs).astype(str)
    n = len(archs)
    pred = knn_predict(emb, archs, emb, k, exclude=np.eye(n, dtype=bool))
    return float(np.mean(pred == archs))


def cross_arch_class_knn(emb: np.ndarray, classes, archs, k: int = 5,
                         query_mask: np.ndarray | None = None, gallery_mask: np.ndarray | None = None) -> float:
    """k-NN class accuracy of queries from gallery rows of other architectures only.

    ``query_mask`` / ``gallery_mask`` (n,) bool select which rows query and which may answer
    (default: all of them)."""
    classes, archs = np.asarray(classes).astype(str), np.asarray(archs).astype(str)
    n = len(classes)
    qm = np.ones(n, bool) if query_mask is None else np.asarray(query_mask, bool)
    gm = np.ones(n, bool) if gallery_mask is None else np.asarray(gallery_mask, bool)
    qi, gi = np.flatnonzero(qm), np.flatnonzero(gm)
    exclude = archs[qi][:, None] == archs[gi][None, :]
    pred = knn_predict(emb[gi], classes[gi], emb[qi], k, exclude=exclude)
    ok = pred != ""
    return float(np.mean(pred[ok] == classes[qi][ok])) if ok.any() else float("nan")


def spread_ratio(emb: np.ndarray) -> float:
    """Mean distance of the embeddings to their mean, over the norm of the mean: how much the
    space varies at all (an untrained GMN maps NeRFs of one shared init almost to a point)."""
    x = np.asarray(emb, np.float64)
    m = x.mean(0)
    return float(np.linalg.norm(x - m, axis=1).mean() / max(np.linalg.norm(m), 1e-12))
