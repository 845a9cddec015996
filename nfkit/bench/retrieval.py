"""Benchmark of exact retrieval: nfkit's torch search against faiss-cpu's flat indexes.

``python -m nfkit.bench.retrieval --out DIR [--sizes 10000 100000] [--dim 1024] [--repeats 50]``

For each gallery size: random unit vectors (``dim`` wide, float32), the same gallery in
:class:`nfkit.eval.search.ExactIndex` (cosine and L2) and in faiss ``IndexFlatIP`` /
``IndexFlatL2``. Measured in the same run:

- ``single``: latency of one query (batch 1), top-k, median (and p90) over ``repeats`` queries;
- ``batch``: ms per query for a batch of ``batch`` queries (throughput), median over repeats;
- ``agreement``: fraction of top-k lists identical between nfkit and faiss (ties aside, exact
  search should give 1.0).

Results: ``DIR/retrieval_bench.json`` and ``DIR/retrieval_bench.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from nfkit.eval.search import ExactIndex


def _unit(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _times_ms(fn: Callable[[int], object], repeats: int) -> np.ndarray:
    fn(0)  # warm-up
    out = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        out.append(1000.0 * (time.perf_counter() - t0))
    return np.array(out)


def bench_size(n: int, dim: int, k: int, repeats: int, batch: int, seed: int = 0, use_faiss: bool = True) -> list[dict]:
    """Rows {engine, metric, n, single_median_ms, single_p90_ms, batch_ms_per_query, agreement}."""
    rng = np.random.default_rng(seed)
    gallery = _unit(n, dim, rng)
    queries = _unit(max(repeats, batch) + 1, dim, rng)
    rows = []
    faiss = None
    if use_faiss:
        try:
            import faiss  # noqa: F811
        except ImportError:
            faiss = None
    for metric in ("cosine", "l2"):
        ours = ExactIndex(gallery, metric)
        engines: dict[str, Callable[[np.ndarray], np.ndarray]] = {"nfkit": lambda q, o=ours: o.search(q, k).index}
        if faiss is not None:
            index = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
            index.add(gallery)  # unit vectors: inner product = cosine
            engines["faiss"] = lambda q, ix=index: ix.search(q, k)[1]
        tops = {}
        for name, search in engines.items():
            single = _times_ms(lambda i, s=search: s(queries[i : i + 1]), repeats)
            batched = _times_ms(lambda i, s=search: s(queries[:batch]), max(3, repeats // 10)) / batch
            tops[name] = search(queries[:batch])
            rows.append({
                "engine": name, "metric": metric, "n": n, "dim": dim, "k": k,
                "single_median_ms": float(np.median(single)), "single_p90_ms": float(np.percentile(single, 90)),
                "batch": batch, "batch_ms_per_query": float(np.median(batched)),
            })
        if "faiss" in tops:
            agree = float((tops["nfkit"] == tops["faiss"]).all(axis=1).mean())
            for r in rows[-2:]:
                r["agreement"] = agree
    return rows


def markdown(rows: Sequence[dict], meta: dict) -> str:
    lines = [
        "## Exact retrieval latency (random unit vectors, top-k, same run)", "",
        f"{meta['machine']}; torch threads {meta['torch_threads']}; dim {rows[0]['dim']}, k {rows[0]['k']}.", "",
        "| gallery | metric | engine | 1 query: median ms | p90 ms | batch of B: ms/query | top-k = faiss |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        agree = f"{100 * r['agreement']:.1f} %" if "agreement" in r else "–"
        lines.append(f"| {r['n']:,} | {r['metric']} | {r['engine']} | {r['single_median_ms']:.2f} | "
                     f"{r['single_p90_ms']:.2f} | {r['batch_ms_per_query']:.3f} (B={r['batch']}) | {agree} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="torch and faiss threads (0: leave as is)")
    p.add_argument("--no-faiss", action="store_true")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
        try:
            import faiss

            faiss.omp_set_num_threads(a.threads)
        except ImportError:
            pass
    rows = []
    for n in a.sizes:
        rows += bench_size(n, a.dim, a.k, a.repeats, a.batch, use_faiss=not a.no_faiss)
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    result = {"meta": meta, "rows": rows}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "retrieval_bench.json").write_text(json.dumps(result, indent=2))
    (a.out / "retrieval_bench.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    return result


if __name__ == "__main__":
    main()
