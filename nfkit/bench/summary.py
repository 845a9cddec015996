"""One table of every benchmark's headline figures: ``bench.json`` and ``bench.md``.

``python -m nfkit.bench.summary --out DIR [--zero-shot FILE]``

Reads what the benchmarks wrote into ``DIR`` (``make bench`` runs them all into one folder):
``fit_bench*.json`` (:mod:`nfkit.bench.fit`), ``graphs_bench.json``, ``encoder_bench.json``,
``retrieval_bench.json``, ``classify_bench.json``, and the zero-shot report of
``nfkit classify --zero-shot`` (``--zero-shot``, by default ``DIR/../classify/zero-shot.json``,
the demo workspace's). Every figure stands next to the naive way or the peer library it was
measured against in the same run. A benchmark that has not run gives a row saying so.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _f(x, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def fit_rows(out: Path) -> list[dict]:
    rows = []
    for path in sorted(out.glob("fit_bench*.json")):
        r = _load(path)
        if not r:
            continue
        for arch, modes in r["results"].items():
            b, one = modes.get("batched"), modes.get("one-at-a-time") or modes.get("naive")
            w = modes.get("workers")
            naive = (r.get("naive") or {}).get(arch)
            rows.append({
                "set": r.get("dataset", "procedural"), "arch": arch,
                "nerfs_per_min": b and b["nerfs_per_min"], "one_at_a_time_per_min": one and one["nerfs_per_min"],
                "workers_per_min": w and w["nerfs_per_min"],
                "psnr": b and b["mean_psnr"], "fg_psnr": b and b.get("mean_fg_psnr"),
                "naive_ratio": naive and naive["speedup"], "naive_reached": naive and naive["all_reached"],
                "source": path.name,
            })
    return rows


def summarise(out: Path, zero_shot: Path | None = None) -> dict:
    zero_shot = zero_shot or out.parent / "classify" / "zero-shot.json"
    graphs, encoder = _load(out / "graphs_bench.json"), _load(out / "encoder_bench.json")
    retrieval, classify, zs = _load(out / "retrieval_bench.json"), _load(out / "classify_bench.json"), _load(zero_shot)
    return {
        "fit": fit_rows(out),
        "graphs": [{"arch": r["arch"], "build_per_s": r["build_per_s"], "shard_per_s": r["shard_per_s"]}
                   for r in (graphs or {}).get("rows", [])],
        "embed": [{"arch": a["arch"], "sparse_ms": a["embed"]["cpu"]["sparse_ms"], "dense_ms": a["embed"]["cpu"]["dense_ms"]}
                  for a in (encoder or {}).get("archs", [])],
        "retrieval": [{k: r[k] for k in ("engine", "metric", "n", "single_median_ms", "batch_ms_per_query")}
                      for r in (retrieval or {}).get("rows", [])],
        "classify": [{k: r.get(k) for k in ("method", "accuracy", "total_ms", "n_test")} for r in (classify or {}).get("rows", [])],
        "zero_shot": [{k: r.get(k) for k in ("method", "accuracy", "ms_per_nerf", "n")} for r in (zs or {}).get("rows", [])],
        "sources": {"graphs": graphs is not None, "encoder": encoder is not None, "retrieval": retrieval is not None,
                    "classify": classify is not None, "zero_shot": str(zero_shot) if zs is not None else None},
    }


def markdown(s: dict) -> str:
    lines = ["# nfkit benchmarks: one table", "",
             "Every figure next to the naive way or the peer library, measured in the same run (the sources are "
             "the benchmarks' own reports in this folder, which say how each was measured).", ""]
    lines += ["## fit-nerfs", "", "| set | arch | NeRFs/min batched | one at a time | in worker processes | test PSNR | foreground PSNR | naive torch loop / nfkit time to equal PSNR |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in s["fit"]:
        naive = "–" if r["naive_ratio"] is None else f"{r['naive_ratio']:.1f}×" + ("" if r["naive_reached"] else " (≥, not reached)")
        lines.append(f"| {r['set']} | {r['arch']} | {_f(r['nerfs_per_min'])} | {_f(r['one_at_a_time_per_min'])} | {_f(r.get('workers_per_min'))} | "
                     f"{_f(r['psnr'], 2)} | {_f(r['fg_psnr'], 2)} | {naive} |")
    if not s["fit"]:
        lines.append("| not measured: `python -m nfkit.bench.fit` | | | | | | | |")
    lines += ["", "## build-graphs", "", "| arch | graphs/s (in memory) | graphs/s (NeRF shard → graph shard on disk) |", "|---|---:|---:|"]
    lines += [f"| {r['arch']} | {_f(r['build_per_s'])} | {_f(r['shard_per_s'])} |" for r in s["graphs"]] or ["| not measured: `python -m nfkit.bench.graphs` | | |"]
    lines += ["", "## embed (GMN encoder, `cpu` size, all edges)", "",
              "| arch | ms per NeRF, sparse (torch_geometric) | ms per NeRF, dense blocks | embeddings/s (the faster) |", "|---|---:|---:|---:|"]
    lines += [f"| {r['arch']} | {_f(r['sparse_ms'])} | {_f(r['dense_ms'])} | {_f(1000 / min(r['sparse_ms'], r['dense_ms']), 2)} |"
              for r in s["embed"]] or ["| not measured: `python -m nfkit.bench.encoder` | | | |"]
    lines += ["", "## retrieval latency (1024-d, k 10)", "", "| gallery | metric | nfkit single query ms | faiss IndexFlat single query ms | nfkit batched ms/query | faiss batched ms/query |",
              "|---:|---|---:|---:|---:|---:|"]
    by = {(r["engine"], r["metric"], r["n"]): r for r in s["retrieval"]}
    for (engine, metric, n), r in by.items():
        if engine != "nfkit":
            continue
        f = by.get(("faiss", metric, n), {})
        lines.append(f"| {n:,} | {metric} | {_f(r['single_median_ms'], 2)} | {_f(f.get('single_median_ms'), 2)} | "
                     f"{_f(r['batch_ms_per_query'], 2)} | {_f(f.get('batch_ms_per_query'), 2)} |")
    if not s["retrieval"]:
        lines.append("| not measured: `python -m nfkit.bench.retrieval` | | | | | |")
    lines += ["", "## classification from weights vs rendering", "", "| method | accuracy | ms per NeRF | test NeRFs |", "|---|---:|---:|---:|"]
    lines += [f"| {r['method']} | {_f(100 * r['accuracy'])} % | {_f(r['total_ms'])} | {r['n_test']} |" for r in s["classify"]] \
        or ["| not measured: `python -m nfkit.bench.classify` (needs a workspace with an encoder) | | | |"]
    lines += ["", "## zero-shot: nerf2clip vs render + CLIP", "", "| method | accuracy | ms per NeRF | NeRFs |", "|---|---:|---:|---:|"]
    lines += [f"| {r['method']} | {_f(100 * r['accuracy'])} % | {_f(r['ms_per_nerf'], 2)} | {r['n']} |" for r in s["zero_shot"]] \
        or ["| not measured: `nfkit classify --zero-shot` (the demo runs it) | | | |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nfkit.bench.summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the folder the benchmarks wrote into")
    parser.add_argument("--zero-shot", type=Path, default=None, help="zero-shot.json of nfkit classify --zero-shot")
    args = parser.parse_args(argv)
    if not args.out.is_dir():
        parser.error(f"--out {args.out}: no such folder")
    s = summarise(args.out, args.zero_shot)
    (args.out / "bench.json").write_text(json.dumps(s, indent=2) + "\n")
    (args.out / "bench.md").write_text(markdown(s))
    print(f"wrote {args.out / 'bench.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
