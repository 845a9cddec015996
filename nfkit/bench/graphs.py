"""Benchmark of ``build-graphs``: graphs built and loaded per second, per architecture.

``python -m nfkit.bench.graphs --out DIR [--arch NAME ...] [--graphs N] [--budget SECONDS]``

For every architecture (default: the 13 of the registry, at paper size) it writes a NeRF shard of
``N`` NeRFs with random weights, then measures

- ``build``: graphs per second of :func:`nfkit.graphs.build.nerf_to_graph` (in memory);
- ``shard``: graphs per second of the whole conversion of a NeRF shard into a graph shard
  (read, build, write to disk);
- ``load_dataset``: graphs per second through ``GraphDataset`` + ``collate_graphs`` (batches
  of 8, what a DataLoader does), and ``load_pyg`` the same with ``Batch.from_data_list``;
- ``load_direct``: graphs per second of ``GraphShard.batch`` (batches of 8 from the arrays);
- ``inverse``: graphs per second of ``graph_to_params``.

Timings repeat each measurement until ``--budget`` seconds have passed and report the mean.
Results: ``DIR/graphs_bench.json`` and ``DIR/graphs_bench.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from nfkit.graphs.build import graph_to_params, nerf_to_graph
from nfkit.graphs.convert import build_graph_shard
from nfkit.graphs.store import GraphDataset, GraphShard, collate_graphs
from nfkit.nerf.specs import REGISTRY, ArchSpec
from nfkit.nerf.store import NerfRecord, write_nerf_shard

log = logging.getLogger(__name__)
BATCH = 8


def _rate(fn: Callable[[], int], budget: float) -> float:
    """Items per second of ``fn`` (which returns how many items it processed)."""
    fn()  # warm-up (caches, page cache)
    done, t0 = 0, time.perf_counter()
    while True:
        done += fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= budget:
            return done / elapsed


def _records(spec: ArchSpec, n: int, seed: int) -> list[NerfRecord]:
    rng = np.random.default_rng(seed)
    return [
        NerfRecord(
            f"obj{i:04d}",
            "chair",
            "train",
            spec,
            "0" * 16,
            {k: rng.standard_normal(s, dtype=np.float32) for k, s in spec.param_shapes().items()},
        )
        for i in range(n)
    ]


def bench_arch(spec: ArchSpec, work: Path, n_graphs: int, budget: float) -> dict:
    recs = _records(spec, n_graphs, seed=0)
    nerf_path = work / "nerfs" / f"{spec.name}.h5"
    graph_path = work / "graphs" / f"{spec.name}.h5"
    write_nerf_shard(nerf_path, recs)
    graph = nerf_to_graph(spec, recs[0].params)
    row: dict = {
        "arch": spec.name,
        "family": spec.family,
        "nodes": graph.num_nodes,
        "edges": graph.num_edges,
        "params": spec.n_params(),
    }

    def build() -> int:
        for r in recs:
            nerf_to_graph(spec, r.params)
        return len(recs)

    def shard() -> int:
        build_graph_shard(nerf_path, graph_path)
        return len(recs)

    row["build_per_s"] = _rate(build, budget)
    row["shard_per_s"] = _rate(shard, budget)
    row["shard_mb_per_graph"] = graph_path.stat().st_size / n_graphs / 2**20
    ds = GraphDataset(graph_path)
    gshard = GraphShard(graph_path)
    starts = range(0, len(ds) - BATCH + 1, BATCH)

    def load_dataset() -> int:
        for s in starts:
            collate_graphs([ds[i] for i in range(s, s + BATCH)])
        return len(starts) * BATCH

    def load_pyg() -> int:
        from torch_geometric.data import Batch

        for s in starts:
            Batch.from_data_list([ds[i] for i in range(s, s + BATCH)])
        return len(starts) * BATCH

    def load_direct() -> int:
        for s in starts:
            gshard.batch(range(s, s + BATCH))
        return len(starts) * BATCH

    def inverse() -> int:
        for i in range(len(gshard)):
            graph_to_params(spec, gshard.graph(i))
        return len(gshard)

    row["load_dataset_per_s"] = _rate(load_dataset, budget)
    row["load_pyg_per_s"] = _rate(load_pyg, budget)
    row["load_direct_per_s"] = _rate(load_direct, budget)
    row["inverse_per_s"] = _rate(inverse, budget)
    return row


def _markdown(rows: Sequence[dict], meta: dict) -> str:
    cols = [
        ("arch", "arch", "{}"),
        ("nodes", "nodes", "{}"),
        ("edges", "edges", "{}"),
        ("build_per_s", "built/s (memory)", "{:.0f}"),
        ("shard_per_s", "built/s (shard on disk)", "{:.0f}"),
        ("load_dataset_per_s", "loaded/s (Dataset+collate_graphs)", "{:.0f}"),
        ("load_pyg_per_s", "loaded/s (Dataset+Batch.from_data_list)", "{:.0f}"),
        ("load_direct_per_s", "loaded/s (GraphShard.batch)", "{:.0f}"),
        ("inverse_per_s", "inverted/s", "{:.0f}"),
        ("shard_mb_per_graph", "MB/graph", "{:.2f}"),
    ]
    lines = [
        "# build-graphs benchmark",
        "",
        f"{meta['machine']}, {meta['cpus']} CPU(s) (load average {meta['load_average']}), "
        f"torch {meta['torch']} ({meta['torch_threads']} threads), torch_geometric {meta['pyg']}; "
        f"{meta['graphs']} graphs per architecture (paper size, random weights), batches of {BATCH}, "
        f"{meta['budget']} s per measurement; total {meta['seconds']:.0f} s.",
        "",
        "| " + " | ".join(c[1] for c in cols) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(cols))) + "|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(fmt.format(r[key]) for key, _, fmt in cols) + " |")
    return "\n".join(lines) + "\n"


def run(
    out: Path, archs: Sequence[str] | None = None, n_graphs: int = 16, budget: float = 0.5
) -> dict:
    """Run the benchmark; write ``out/graphs_bench.json`` and ``out/graphs_bench.md``."""
    import torch
    import torch_geometric

    if n_graphs < BATCH:
        raise ValueError(f"--graphs must be at least {BATCH}")
    specs = [
        REGISTRY[a.lower()] if a.lower() in REGISTRY else None for a in (archs or list(REGISTRY))
    ]
    if None in specs:
        raise ValueError(
            f"unknown architecture in {list(archs or [])}; choose from {', '.join(REGISTRY)}"
        )
    out = Path(out)
    work = out / "graphs_bench_work"
    t0 = time.perf_counter()
    rows = []
    try:
        for spec in specs:
            rows.append(bench_arch(spec, work, n_graphs, budget))
            log.info("%s: %s", spec.name, rows[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "pyg": torch_geometric.__version__,
        "graphs": n_graphs,
        "budget": budget,
        "batch": BATCH,
        "seconds": time.perf_counter() - t0,
    }
    result = {"meta": meta, "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "graphs_bench.json").write_text(json.dumps(result, indent=2))
    (out / "graphs_bench.md").write_text(_markdown(rows, meta))
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m nfkit.bench.graphs", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for graphs_bench.json / .md"
    )
    parser.add_argument(
        "--arch", action="append", help="architecture name (repeatable; default: all 13)"
    )
    parser.add_argument(
        "--graphs", type=int, default=16, help="NeRFs per architecture (default 16)"
    )
    parser.add_argument(
        "--budget", type=float, default=0.5, help="seconds per measurement (default 0.5)"
    )
    args = parser.parse_args(argv)
    try:
        run(args.out, args.arch, args.graphs, args.budget)
    except ValueError as exc:
        parser.error(str(exc))
    print((args.out / "graphs_bench.md").read_text(), end="")


if __name__ == "__main__":
    main()
