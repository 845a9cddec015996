"""A short Markdown report of what a pipeline run produced (``make demo`` ends with it).

Usage: ``python -m nfkit.eval.report RUN_DIR`` where RUN_DIR holds ``data/`` (a dataset),
``nerfs/`` (NeRF shards), ``graphs/`` (graph shards) and optionally ``views/`` and ``bench/``.
Every number is read back from the artifacts on disk, not from the logs of the run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def _dataset_section(data: Path) -> list[str]:
    meta_file = data / "dataset.json"
    if not meta_file.is_file():
        return []
    meta = json.loads(meta_file.read_text())
    cfg = meta.get("config", {})
    lines = [
        "## Dataset",
        "",
        f"- `{data}`: {meta.get('n_objects', '?')} objects, {len(meta.get('classes', {}))} classes, "
        f"{cfg.get('views', '?')} views of {cfg.get('resolution', '?')}×{cfg.get('resolution', '?')} px, "
        f"seed {cfg.get('seed', '?')}",
        f"- splits: {', '.join(f'{k} {v}' for k, v in meta.get('splits', {}).items())}",
    ]
    return lines + [""]


def _fit_section(nerfs: Path) -> list[str]:
    from nfkit.nerf.store import PSNR_ON, find_shards, iter_nerfs

    # NeRF shards only, by their header (the shared inits kept in nerfs/inits/ are another
    # kind); not by folder names, which may be anywhere in the run folder's own path
    shards = find_shards(nerfs)
    if not shards:
        return []
    by_arch: dict[str, list] = defaultdict(list)
    for rec in iter_nerfs(shards, load_params=False):
        by_arch[rec.arch.name].append(rec)
    lines = [
        "## fit-nerfs",
        "",
        "| arch | NeRFs | held-out PSNR mean (dB) | min | max | PSNR measured on | fit s/NeRF (mean) | init |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for arch, recs in by_arch.items():
        psnr = np.array([r.psnr for r in recs], float)
        secs = np.array([r.fit_seconds for r in recs], float)
        ok = psnr[np.isfinite(psnr)]
        fmt = (lambda v: f"{v:.2f}") if ok.size else (lambda v: "n/a")
        on: dict[str, int] = defaultdict(int)
        for r in recs:
            on[r.psnr_on] += 1
        on_text = "; ".join(f"{PSNR_ON.get(k, k)} ({n})" for k, n in sorted(on.items()) if k) or "n/a"
        mean_secs = f"{np.nanmean(secs):.1f}" if np.isfinite(secs).any() else "n/a"
        lines.append(
            f"| {arch} | {len(recs)} | {fmt(ok.mean() if ok.size else math.nan)} | "
            f"{fmt(ok.min() if ok.size else math.nan)} | {fmt(ok.max() if ok.size else math.nan)} | "
            f"{on_text} | {mean_secs} | `{recs[0].init_fingerprint}` |"
        )
    worst = sorted(
        (r for rs in by_arch.values() for r in rs if math.isfinite(r.psnr)), key=lambda r: r.psnr
    )[:3]
    if worst:
        lines += ["", "Lowest held-out PSNR: " + ", ".join(
            f"{r.arch.name} {r.key} {r.psnr:.1f} dB" for r in worst)]
    return lines + [""]


def _graph_section(graphs: Path) -> list[str]:
    from nfkit.graphs.convert import graph_stats

    if not graphs.is_dir() or not any(graphs.rglob("*.h5")):
        return []
    lines = [
        "## build-graphs",
        "",
        "| arch | family | graphs | nodes/graph | edges/graph | MB/graph |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in graph_stats(graphs):
        nodes = f"{s.nodes_min}" if s.nodes_min == s.nodes_max else f"{s.nodes_min}–{s.nodes_max}"
        edges = f"{s.edges_min}" if s.edges_min == s.edges_max else f"{s.edges_min}–{s.edges_max}"
        lines.append(
            f"| {s.arch} | {s.family} | {s.graphs} | {nodes} | {edges} | {s.bytes / 2**20 / s.graphs:.2f} |"
        )
    return lines + [""]


def _pictures_section(run: Path) -> list[str]:
    views = run / "views"
    per_arch = [sorted(d.rglob("*.png"))[:2] for d in sorted(views.iterdir()) if d.is_dir()] if views.is_dir() else []
    pics = sorted(run.glob("*.png")) + [p for group in per_arch for p in group]
    if not pics:
        return []
    lines = ["## Pictures", ""]
    for p in pics:
        rel = p.relative_to(run)
        lines.append(f"![{rel}]({rel})")
    return lines + [""]


def _bench_section(run: Path) -> list[str]:
    lines = []
    for md in sorted((run / "bench").glob("*.md")):
        lines += [f"## Benchmark: {md.stem}", "", md.read_text().strip(), ""]
    return lines


def build_report(run: Path) -> str:
    run = Path(run)
    lines = [f"# nfkit run report: `{run}`", ""]
    lines += _dataset_section(run / "data")
    lines += _fit_section(run / "nerfs") if (run / "nerfs").is_dir() else []
    lines += _graph_section(run / "graphs")
    lines += _bench_section(run)
    lines += _pictures_section(run)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="folder of a pipeline run (e.g. demo_out)")
    parser.add_argument("--out", type=Path, default=None, help="report path (default RUN/report.md)")
    args = parser.parse_args(argv)
    if not args.run.is_dir():
        print(f"error: {args.run}: no such folder", file=sys.stderr)
        return 1
    text = build_report(args.run)
    out = args.out or args.run / "report.md"
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
