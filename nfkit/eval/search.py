"""Exact k-nearest-neighbour search in torch: chunked matrix product + top-k.

The gallery is prepared once (:class:`ExactIndex`: cosine rows L2-normalised, L2 squared norms
cached); a search multiplies a chunk of queries by the whole gallery, masks the excluded rows
and keeps the k best with ``torch.topk``. Results are exact and deterministic: rows with equal
scores are ordered by gallery index (lower first), also at the k-th place, so the ranking
equals a stable sort of the brute-force distance matrix.

Distances returned: cosine ``1 - cos`` (in [0, 2]); L2 the Euclidean distance.
faiss-cpu's ``IndexFlatIP`` / ``IndexFlatL2`` are the peers (``nfkit.bench.retrieval``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

METRICS = ("cosine", "l2")


def check_metric(metric: str) -> str:
    m = str(metric).strip().lower()
    if m not in METRICS:
        raise ValueError(f"unknown distance {metric!r}; expected one of {', '.join(METRICS)}")
    return m


@dataclass
class SearchResult:
    """Shapes: ``index`` (nq, k) int64 gallery rows, best first, -1 past the end;
    ``distance`` (nq, k) float32, inf past the end."""

    index: np.ndarray
    distance: np.ndarray


def _as_tensor(x, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32) if not torch.is_tensor(x) else x)
    return t.to(device=device, dtype=torch.float32)


class ExactIndex:
    """An exact search index over a gallery of vectors.

    Shapes: gallery (n, dim) float.
    """

    def __init__(self, gallery, metric: str = "cosine", device: str | torch.device = "cpu") -> None:
        self.metric = check_metric(metric)
        self.device = torch.device(device)
        g = _as_tensor(gallery, self.device)
        if g.ndim != 2:
            raise ValueError(f"gallery must be (n, dim), got shape {tuple(g.shape)}")
        if self.metric == "cosine":
            g = torch.nn.functional.normalize(g, dim=1)
            self._sq = None
        else:
            self._sq = (g * g).sum(dim=1)
        self._g = g.contiguous()

    def __len__(self) -> int:
        return int(self._g.shape[0])

    @property
    def dim(self) -> int:
        return int(self._g.shape[1])

    def _scores(self, q: torch.Tensor) -> torch.Tensor:
        """Higher is nearer. (nq, dim) -> (nq, n)."""
        s = q @ self._g.T
        if self.metric == "l2":
            s = 2.0 * s - self._sq[None, :]  # -(|g|^2 - 2 q.g): |q|^2 is the same for every row
        return s

    def _to_distance(self, q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if self.metric == "cosine":
            return 1.0 - s
        return torch.sqrt(torch.clamp((q * q).sum(dim=1, keepdim=True) - s, min=0.0))

    @torch.no_grad()
    def search(self, queries, k: int, exclude=None, chunk: int = 256) -> SearchResult:
        """The k nearest gallery rows of each query.

        Shapes: queries (nq, dim); exclude (nq,) int gallery row to leave out per query (-1 =
        none) -> :class:`SearchResult` with (nq, min(k, n)) arrays. When ``exclude`` is given
        a row may have one result fewer; its last column is then -1 / inf.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = _as_tensor(queries, self.device)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be (n, {self.dim}), got shape {tuple(q.shape)}")
        if self.metric == "cosine":
            q = torch.nn.functional.normalize(q, dim=1)
        n = len(self)
        kk = min(k, n)
        ex = None
        if exclude is not None:
            ex = torch.as_tensor(np.asarray(exclude, dtype=np.int64), device=self.device)
            if ex.shape != (q.shape[0],):
                raise ValueError(f"exclude must be ({q.shape[0]},), got {tuple(ex.shape)}")
        out_i = np.full((q.shape[0], kk), -1, np.int64)
        out_d = np.full((q.shape[0], kk), np.inf, np.float32)
        if n == 0:
            return SearchResult(out_i, out_d)
        for a in range(0, q.shape[0], chunk):
            qc = q[a : a + chunk]
            s = self._scores(qc)
            if ex is not None:
                e = ex[a : a + chunk]
                rows = torch.nonzero(e >= 0).flatten()
                s[rows, e[rows]] = -torch.inf
            val, idx = _topk_stable(s, kk)
            dist = self._to_distance(qc, val)
            bad = torch.isneginf(val)
            idx[bad] = -1
            dist[bad] = torch.inf
            out_i[a : a + chunk] = idx.cpu().numpy()
            out_d[a : a + chunk] = dist.cpu().numpy()
        return SearchResult(out_i, out_d)


def _topk_stable(s: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of each row, ties ordered by column index (lower first), at the boundary too.

    Shapes: (m, n) -> values (m, k), indices (m, k) int64.
    """
    n = s.shape[1]
    val, idx = torch.topk(s, min(k + 1, n), dim=1)
    if n > k:
        # a tie across the k-th place only if the (k+1)-th score equals the k-th: then take
        # every column better than the k-th score plus the lowest-index tied ones
        kth = val[:, k - 1 : k]
        fix = torch.nonzero(val[:, k] == val[:, k - 1]).flatten()
        val, idx = val[:, :k].clone(), idx[:, :k].clone()
        for r in fix.tolist():
            better = torch.nonzero(s[r] > kth[r]).flatten()
            tied = torch.nonzero(s[r] == kth[r]).flatten()[: k - better.numel()]
            cols = torch.cat([better, tied])
            idx[r] = cols
            val[r] = s[r, cols]
    # order by (score desc, index asc): sort by index, then stable sort by score
    order = torch.argsort(idx, dim=1)
    idx, val = torch.gather(idx, 1, order), torch.gather(val, 1, order)
    order = torch.argsort(val, dim=1, descending=True, stable=True)
    return torch.gather(val, 1, order), torch.gather(idx, 1, order)


def knn(gallery, queries, k: int, metric: str = "cosine", exclude=None, device="cpu") -> SearchResult:
    """One-shot exact search (builds an :class:`ExactIndex` and searches it)."""
    return ExactIndex(gallery, metric, device).search(queries, k, exclude=exclude)


def brute_force(gallery: np.ndarray, queries: np.ndarray, k: int, metric: str = "cosine", exclude=None) -> SearchResult:
    """Reference implementation in float64 numpy (full distance matrix, stable sort); tests."""
    metric = check_metric(metric)
    g = np.asarray(gallery, np.float64)
    q = np.asarray(queries, np.float64)
    if metric == "cosine":
        g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        d = 1.0 - q @ g.T
    else:
        d = np.sqrt(np.maximum(((q[:, None, :] - g[None, :, :]) ** 2).sum(-1), 0.0))
    if exclude is not None:
        for i, e in enumerate(np.asarray(exclude)):
            if e >= 0:
                d[i, e] = np.inf
    kk = min(k, len(g))
    order = np.argsort(d, axis=1, kind="stable")[:, :kk]
    dist = np.take_along_axis(d, order, axis=1)
    order = np.where(np.isinf(dist), -1, order)
    return SearchResult(order.astype(np.int64), dist.astype(np.float32))


__all__ = ["METRICS", "check_metric", "SearchResult", "ExactIndex", "knn", "brute_force"]
