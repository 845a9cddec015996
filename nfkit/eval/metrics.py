"""Evaluation metrics as pure numpy functions: classification and retrieval.

Retrieval metrics work on a *ranking*: ``ranked`` (n_queries, K) int64 gallery indices, best
first, ``-1`` where fewer than K results exist (a gallery smaller than K, or a query whose
own row was excluded). :func:`relevance` turns a ranking into a boolean matrix
``rel[i, j]`` = "the j-th result of query i is relevant", and every retrieval metric reads
that matrix (and, for mAP, the number of relevant gallery items per query).

Definitions (``rel[:, :k]`` = the first k results; results that do not exist count as not
relevant):

- **hit rate@k** (:func:`hit_rate_at_k`): fraction of queries with at least one relevant
  result among their first k. With "relevant = same object in another architecture" this is
  the *instance recall@k* of seed 000 Table 6 (each query has one or a few relevant items);
  with "relevant = same class, the query itself excluded" it is the figure nf2vec's code
  (CVLAB-Unibo/nf2vec ``retrieval.py``) computes and seed 003 Table V calls mAP@k: nfkit
  calls it the **class hit rate@k**.
- **precision@k** (:func:`precision_at_k`): relevant results among the first k divided by the
  number of results returned (``min(k, gallery size)``), averaged over queries.
- **AP@k / mAP@k** (:func:`map_at_k`): AP@k = (1 / min(k, R)) Σ_{j ≤ k} P@j · rel_j with R the
  number of relevant items in the gallery; mAP@k the mean over queries with R > 0 (AP is
  undefined without a relevant item; such queries are counted by
  :func:`queries_without_match` and left out of the mean).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check_1d(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-d (n,), got shape {a.shape}")
    return a


# --------------------------------------------------------------------------- classification


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Fraction of ``pred == target``. Shapes: (n,), (n,) -> float (NaN when n = 0)."""
    pred, target = _check_1d("pred", pred), _check_1d("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ")
    return float(np.mean(pred == target)) if len(pred) else float("nan")


def confusion_matrix(pred: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``m[t, p]`` of samples of true class t predicted as p.

    Shapes: pred, target (n,) int in [0, n_classes) -> (n_classes, n_classes) int64.
    """
    pred, target = _check_1d("pred", pred).astype(np.int64), _check_1d("target", target).astype(np.int64)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ")
    for name, a in (("pred", pred), ("target", target)):
        if len(a) and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(f"{name} labels must lie in [0, {n_classes}), got {a.min()}..{a.max()}")
    m = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(m, (target, pred), 1)
    return m


def per_class_accuracy(conf: np.ndarray) -> np.ndarray:
    """Recall of each true class from a confusion matrix (NaN for absent classes). (C, C) -> (C,)."""
    conf = np.asarray(conf)
    support = conf.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(conf) / np.maximum(support, 1), np.nan)


# --------------------------------------------------------------------------- retrieval


def relevance(ranked: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray) -> np.ndarray:
    """``rel[i, j] = gallery_labels[ranked[i, j]] == query_labels[i]`` (False where ranked = -1).

    Shapes: ranked (nq, K) int; query_labels (nq,); gallery_labels (ng,) -> (nq, K) bool.
    Labels may be any comparable values (class names, ``class/object`` keys, ints).
    """
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be (n_queries, k), got shape {ranked.shape}")
    q = _check_1d("query_labels", query_labels)
    g = _check_1d("gallery_labels", gallery_labels)
    if len(q) != ranked.shape[0]:
        raise ValueError(f"{len(q)} query labels for {ranked.shape[0]} ranked queries")
    if ranked.size and ranked.max() >= len(g):
        raise ValueError(f"ranked index {ranked.max()} outside a gallery of {len(g)}")
    valid = ranked >= 0
    picked = g[np.where(valid, ranked, 0)] if len(g) else np.empty(ranked.shape, dtype=g.dtype)
    return valid & (picked == q[:, None])


def _check_k(rel: np.ndarray, k: int) -> np.ndarray:
    rel = np.asarray(rel, dtype=bool)
    if rel.ndim != 2:
        raise ValueError(f"relevance must be (n_queries, K), got shape {rel.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return rel


def hit_rate_at_k(rel: np.ndarray, k: int) -> float:
    """Fraction of queries with a relevant result among the first k (recall@k of Table 6;
    nf2vec's "mAP@k"). ``k`` larger than the ranking uses all of it. (nq, K) -> float."""
    rel = _check_k(rel, k)
    return float(rel[:, :k].any(axis=1).mean()) if len(rel) else float("nan")


def precision_at_k(rel: np.ndarray, k: int, n_returned: np.ndarray | int | None = None) -> float:
    """Mean over queries of (relevant among the first k) / (results returned among the first k).

    ``n_returned`` (nq,) or int: how many real results each row holds (default: all K columns,
    i.e. ``min(k, K)``). Rows with nothing returned count as precision 0.
    """
    rel = _check_k(rel, k)
    if not len(rel):
        return float("nan")
    top = rel[:, :k]
    n = np.full(len(rel), top.shape[1]) if n_returned is None else np.broadcast_to(n_returned, (len(rel),))
    n = np.minimum(n, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, top.sum(axis=1) / np.maximum(n, 1), 0.0)
    return float(p.mean())


def average_precision_at_k(rel: np.ndarray, k: int, n_relevant: np.ndarray) -> np.ndarray:
    """AP@k per query: (1 / min(k, R)) Σ_{j ≤ k} P@j · rel_j; NaN where R = 0.

    Shapes: rel (nq, K) bool, n_relevant (nq,) int (R, relevant items in the whole gallery) ->
    (nq,) float.
    """
    rel = _check_k(rel, k)
    r = _check_1d("n_relevant", n_relevant).astype(np.int64)
    if len(r) != len(rel):
        raise ValueError(f"{len(r)} relevant counts for {len(rel)} queries")
    top = rel[:, :k].astype(np.float64)
    ranks = np.arange(1, top.shape[1] + 1, dtype=np.float64)
    prec_at_j = np.cumsum(top, axis=1) / ranks
    denom = np.minimum(r, k).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(r > 0, (prec_at_j * top).sum(axis=1) / np.maximum(denom, 1), np.nan)


def map_at_k(rel: np.ndarray, k: int, n_relevant: np.ndarray) -> float:
    """Mean AP@k over the queries that have a relevant item in the gallery (NaN if none)."""
    ap = average_precision_at_k(rel, k, n_relevant)
    ok = ~np.isnan(ap)
    return float(ap[ok].mean()) if ok.any() else float("nan")


def queries_without_match(n_relevant: np.ndarray) -> int:
    """How many queries have no relevant item in the gallery (they can never hit)."""
    return int((np.asarray(n_relevant) == 0).sum())


def count_relevant(
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """R per query: gallery items with the query's label, minus the excluded row if it has it.

    Shapes: (nq,), (ng,), exclude (nq,) int gallery row or -1 -> (nq,) int64.
    """
    q = _check_1d("query_labels", query_labels)
    g = _check_1d("gallery_labels", gallery_labels)
    values, counts = np.unique(g, return_counts=True)
    lookup = dict(zip(values.tolist(), counts.tolist(), strict=True))
    r = np.array([lookup.get(v, 0) for v in q.tolist()], np.int64)
    if exclude is not None:
        ex = _check_1d("exclude", exclude).astype(np.int64)
        has = ex >= 0
        r[has] -= (g[ex[has]] == q[has]).astype(np.int64)
    return r


def retrieval_scores(
    ranked: np.ndarray,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
    exclude: np.ndarray | None = None,
    unmatched: str = "miss",
) -> dict[str, float]:
    """Hit rate, precision and mAP at every k, as ``{"hit@1": ..., "precision@1": ..., "map@1": ...}``
    plus ``n_queries`` (queries the rates are averaged over) and ``no_match`` (queries without
    any relevant gallery item).

    ``unmatched="miss"`` counts queries without a relevant item as failures in the hit rate and
    precision (nf2vec's class figure divides by every query); ``"skip"`` leaves them out
    (instance recall: an object absent from the gallery cannot be found). mAP always leaves
    them out (AP is undefined there).
    """
    if unmatched not in ("miss", "skip"):
        raise ValueError(f"unmatched must be 'miss' or 'skip', got {unmatched!r}")
    rel = relevance(ranked, query_labels, gallery_labels)
    n_rel = count_relevant(query_labels, gallery_labels, exclude)
    n_returned = (np.asarray(ranked) >= 0).sum(axis=1)
    no_match = queries_without_match(n_rel)
    if unmatched == "skip":
        keep = n_rel > 0
        rel, n_rel, n_returned = rel[keep], n_rel[keep], n_returned[keep]
    out: dict[str, float] = {"n_queries": float(len(rel)), "no_match": float(no_match)}
    for k in ks:
        out[f"hit@{k}"] = hit_rate_at_k(rel, k)
        out[f"precision@{k}"] = precision_at_k(rel, k, n_returned)
        out[f"map@{k}"] = map_at_k(rel, k, n_rel)
    return out


__all__ = [
    "accuracy",
    "confusion_matrix",
    "per_class_accuracy",
    "relevance",
    "hit_rate_at_k",
    "precision_at_k",
    "average_precision_at_k",
    "map_at_k",
    "queries_without_match",
    "count_relevant",
    "retrieval_scores",
]
