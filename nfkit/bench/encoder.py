"""Benchmark of the GMN encoder: sparse (torch_geometric) path against the dense block path.

``python -m nfkit.bench.encoder --out DIR [--arch mlp --arch tri --arch hash] [--repeat 3]``

For each architecture, on graphs of the paper size with random weights, in one run:

- ``embed``: ms per NeRF and NeRFs/s of a frozen encoder (no gradients, all edges, batches of
  ``--batch`` graphs), sparse vs dense, at the ``cpu`` (hidden 32) and ``paper`` (hidden 128)
  sizes; the encoder's FLOPs per graph (matrix products) and the fraction of this machine's
  measured float32 matrix-product rate they reach;
- ``train``: s per step of 8 graphs (forward + backward of the encoder alone), sparse vs dense,
  at the ``cpu`` preset (with its edge sampling) and the ``paper`` size.

The matrix-product rate is measured in the same run (a 2048³ float32 ``torch.mm``).
Results: ``DIR/encoder_bench.json`` and ``DIR/encoder_bench.md``. Timings are medians of
``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Batch

from nfkit.graphs.build import nerf_to_graph
from nfkit.models.gmn import DenseStructure, GMNEncoder, GMNSpec, encoder_flops
from nfkit.nerf.init import create_init

SIZES = {"cpu": 32, "paper": 128}


def matmul_rate(n: int = 2048, repeat: int = 3) -> float:
    """Measured float32 GFLOP/s of one large matrix product."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times) / 1e9


def _graphs(arch: str, n: int):
    from nfkit.nerf.specs import get_arch

    spec = get_arch(arch)
    init = create_init(spec, 0)
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        params = {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in init.params.items()}
        out.append(nerf_to_graph(spec, params))
    return out


def _median_time(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_arch(arch: str, batch: int, repeat: int, rate: float) -> dict:
    graphs = _graphs(arch, batch)
    st = DenseStructure.from_graph(graphs[0].x, graphs[0].edge_index, graphs[0].edge_attr)
    values = torch.stack([torch.from_numpy(g.edge_attr[st.graph_blocks.perm, 0].copy()) for g in graphs])
    pyg = Batch.from_data_list([g.to_data() for g in graphs])
    res: dict = {"arch": arch, "nodes": st.n_nodes, "edges": st.n_edges, "embed": {}, "train": {}}
    for size, hidden in SIZES.items():
        torch.manual_seed(0)
        enc = GMNEncoder(GMNSpec(hidden=hidden))
        flops = encoder_flops(st, enc.spec)
        row = {"gflop_per_graph": flops / 1e9}
        with torch.no_grad():
            t_sparse = _median_time(lambda enc=enc: enc(pyg), repeat) / batch
            t_dense = _median_time(lambda enc=enc: enc.forward_dense(values, st), repeat) / batch
        row.update(
            sparse_ms=1e3 * t_sparse, dense_ms=1e3 * t_dense, speedup=t_sparse / t_dense,
            sparse_frac_peak=flops / t_sparse / 1e9 / rate, dense_frac_peak=flops / t_dense / 1e9 / rate,
        )
        res["embed"][size] = row
        gen = torch.Generator().manual_seed(0)
        sample = st.sample(64, 4096, gen) if size == "cpu" else None

        def step_dense(enc=enc, sample=sample):
            enc.zero_grad(set_to_none=True)
            enc.forward_dense(values, st, sample).sum().backward()

        def step_sparse(enc=enc):
            enc.zero_grad(set_to_none=True)
            enc(pyg).sum().backward()

        per8 = 8 / batch
        res["train"][size] = {
            "dense_s_per_step8": _median_time(step_dense, repeat) * per8,
            "sparse_s_per_step8": _median_time(step_sparse, max(1, repeat - 1)) * per8,
            "sampled": sample is not None,
        }
    return res


def to_markdown(result: dict) -> str:
    lines = [
        f"# Encoder benchmark ({result['machine']}, {result['threads']} threads; "
        f"measured matmul rate {result['matmul_gflops']:.0f} GFLOP/s)",
        "",
        "Embedding (no gradients, all edges): ms per NeRF, sparse torch_geometric path vs dense block path.",
        "",
        "| arch | size | GFLOP/graph | sparse ms | dense ms | speed-up | dense NeRFs/s | dense % of matmul rate |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["archs"]:
        for size, e in r["embed"].items():
            lines.append(
                f"| {r['arch']} | {size} | {e['gflop_per_graph']:.1f} | {e['sparse_ms']:.0f} | {e['dense_ms']:.0f} | "
                f"{e['speedup']:.2f}x | {1e3 / e['dense_ms']:.1f} | {100 * e['dense_frac_peak']:.0f} % |"
            )
    lines += ["", "Training (encoder forward + backward), s per step of 8 graphs; `cpu` uses the preset's edge sampling "
              "(64 sources per block, 4096 readout edges), `paper` all edges.", "",
              "| arch | size | sparse s/step | dense s/step |", "|---|---|---:|---:|"]
    for r in result["archs"]:
        for size, t in r["train"].items():
            sparse = "—" if t["sampled"] else f"{t['sparse_s_per_step8']:.2f}"
            if t["sampled"]:
                sparse = f"{t['sparse_s_per_step8']:.2f} (all edges)"
            lines.append(f"| {r['arch']} | {size} | {sparse} | {t['dense_s_per_step8']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--arch", action="append", default=None)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rate = matmul_rate()
    result = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "matmul_gflops": rate,
        "archs": [bench_arch(a, args.batch, args.repeat, rate) for a in (args.arch or ["mlp", "tri", "hash"])],
    }
    (args.out / "encoder_bench.json").write_text(json.dumps(result, indent=1))
    md = to_markdown(result)
    (args.out / "encoder_bench.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
