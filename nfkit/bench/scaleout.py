"""Scale-out check: every stage in one process next to ``torchrun --nproc-per-node N``.

``python -m nfkit.bench.scaleout --out DIR [--nproc 2] [--objects 6] [--classes ...] [--epochs 12]``

In the workspace ``DIR`` it generates a small procedural dataset, then runs each stage twice,
as a user would (``python -m nfkit STAGE ...`` and ``torchrun --standalone --nproc-per-node N
-m nfkit STAGE ...``), and compares:

- ``fit-nerfs``, ``build-graphs``, ``embed`` (sharded, no communication): the two output
  folders must hold the same files with the same content
  (:mod:`nfkit.eval.same_artifacts`: every dataset and attribute but the creation time and the
  fit's wall time);
- ``pretrain-encoder`` (data-parallel, gloo on the CPU): the training curves (loss per epoch,
  validation PSNR), next to a single-process run with another seed, the measure of "noise".

torchrun gives each process one intra-op thread (``OMP_NUM_THREADS=1``); the single-process
runs use ``--single-threads`` (default 1, so that the comparison is exact: with another thread
count the same weights render held-out PSNRs that differ in the 2nd decimal). Results:
``DIR/scaleout.json`` and ``DIR/scaleout.md`` (with every command).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from nfkit.eval.same_artifacts import compare_folders


def _env(threads: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], log: list[dict], label: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    shown = " ".join(shlex.quote(c) for c in cmd).replace(sys.executable, "python")
    if env.get("OMP_NUM_THREADS") and "torch.distributed.run" not in cmd:
        shown = f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']} {shown}"
    log.append({"label": label, "command": shown, "seconds": round(seconds, 1), "rc": proc.returncode})
    print(f"[{seconds:6.1f} s] {shown}", flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return seconds


def run(out: Path, nproc: int, objects: int, classes: str, views: int, resolution: int, fit_steps: int,
        epochs: int, enc_preset: str, single_threads: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-m", "nfkit"]
    tr = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "nfkit"]
    one, many = _env(single_threads), _env(None)
    log: list[dict] = []
    results: dict = {"nproc": nproc, "single_threads": single_threads, "stages": {}, "curves": {}}
    for d in ("one", "two", "enc-one", "enc-two", "enc-seed1"):
        shutil.rmtree(out / d, ignore_errors=True)
    if not (out / "data" / "dataset.json").is_file():
        _run([*py, "synth", "data", "--objects-per-class", str(objects), "--classes", classes, "--views", str(views),
              "--resolution", str(resolution), "--val-fraction", "0.2", "--test-fraction", "0.2", "--no-progress"],
             out, one, log, "synth")
    fit = ["--preset", "cpu", "--set", f"steps={fit_steps}", "--set", f"resolution={resolution}", "--no-progress"]
    stages = [
        ("fit-nerfs", ["fit-nerfs", "data", *fit], "nerfs"),
        ("build-graphs", ["build-graphs", "one/nerfs", "--no-progress"], "graphs"),
    ]
    for name, args, folder in stages:
        t1 = _run([*py, *args, "--out", f"one/{folder}"], out, one, log, f"{name} (1 process)")
        tn = _run([*tr, *args, "--out", f"two/{folder}"], out, many, log, f"{name} (torchrun x{nproc})")
        diffs = compare_folders(out / "one" / folder, out / "two" / folder)
        files = sum(1 for p in (out / "one" / folder).rglob("*") if p.is_file())
        results["stages"][name] = {"files": files, "equal": not diffs, "differences": diffs[:20],
                                   "seconds_single": round(t1, 1), "seconds_torchrun": round(tn, 1)}
    enc = ["pretrain-encoder", "one/graphs", "one/nerfs", "--preset", enc_preset, "--loss", "r+c",
           "--epochs", str(epochs), "--no-progress"]
    t1 = _run([*py, *enc, "--out", "enc-one"], out, one, log, "pretrain-encoder (1 process)")
    tn = _run([*tr, *enc, "--out", "enc-two", "--dist-backend", "gloo"], out, many, log, f"pretrain-encoder (DDP x{nproc}, gloo)")
    ts = _run([*py, *enc, "--set", "seed=1", "--out", "enc-seed1"], out, one, log, "pretrain-encoder (1 process, seed 1)")
    for key, folder in (("single", "enc-one"), ("ddp", "enc-two"), ("single_seed1", "enc-seed1")):
        hist = json.loads((out / folder / "train_log.json").read_text())["history"]
        results["curves"][key] = [{k: h.get(k) for k in ("epoch", "loss", "loss_r", "loss_c", "val_psnr", "val_siglip")} for h in hist]
    results["stages"]["pretrain-encoder"] = {"seconds_single": round(t1, 1), "seconds_torchrun": round(tn, 1),
                                             "seconds_single_seed1": round(ts, 1)}
    emb = ["embed", "one/graphs", "--encoder", "enc-one/best.h5", "--no-progress"]
    t1 = _run([*py, *emb, "--out", "one/embeddings"], out, one, log, "embed (1 process)")
    tn = _run([*tr, *emb, "--out", "two/embeddings"], out, many, log, f"embed (torchrun x{nproc})")
    diffs = compare_folders(out / "one" / "embeddings", out / "two" / "embeddings")
    results["stages"]["embed"] = {"files": sum(1 for p in (out / "one" / "embeddings").rglob("*") if p.is_file()),
                                  "equal": not diffs, "differences": diffs[:20],
                                  "seconds_single": round(t1, 1), "seconds_torchrun": round(tn, 1)}
    results["commands"] = log
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    (out / "scaleout.json").write_text(json.dumps(results, indent=1))
    (out / "scaleout.md").write_text(markdown(results))
    return results


def _f(v, nd=4) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def markdown(r: dict) -> str:
    n = r["nproc"]
    lines = [f"# Scale-out: one process vs torchrun --nproc-per-node {n}", "",
             f"{r['machine']['cpus']} CPUs; single-process runs with OMP_NUM_THREADS={r['single_threads']}, "
             "torchrun's processes with 1 thread each.", "",
             "| stage | files | same content | s (1 process) | s (torchrun) |", "|---|---:|---|---:|---:|"]
    for name in ("fit-nerfs", "build-graphs", "embed"):
        s = r["stages"][name]
        lines.append(f"| {name} | {s['files']} | {'yes' if s['equal'] else 'NO: ' + '; '.join(s['differences'][:3])} "
                     f"| {s['seconds_single']} | {s['seconds_torchrun']} |")
    s = r["stages"]["pretrain-encoder"]
    lines += ["", f"pretrain-encoder: {s['seconds_single']} s in one process, {s['seconds_torchrun']} s data-parallel "
              f"over {n} ranks (gloo).", "",
              "| epoch | loss (1 proc) | loss (DDP) | loss (1 proc, seed 1) | val PSNR (1 proc) | val PSNR (DDP) | val PSNR (seed 1) |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    c = r["curves"]
    for a, b, s1 in zip(c["single"], c["ddp"], c["single_seed1"], strict=True):
        lines.append(f"| {a['epoch']} | {_f(a['loss'])} | {_f(b['loss'])} | {_f(s1['loss'])} | {_f(a['val_psnr'], 2)} "
                     f"| {_f(b['val_psnr'], 2)} | {_f(s1['val_psnr'], 2)} |")
    d_ddp = max(abs(a["loss"] - b["loss"]) for a, b in zip(c["single"], c["ddp"], strict=True))
    d_seed = max(abs(a["loss"] - b["loss"]) for a, b in zip(c["single"], c["single_seed1"], strict=True))
    lines += ["", f"largest loss difference per epoch: DDP vs 1 process {d_ddp:.2e}; seed 1 vs seed 0 {d_seed:.2e}.", "",
              "## Commands", "", "```"]
    lines += [f"{x['command']}   # {x['label']}, {x['seconds']} s" for x in r["commands"]]
    lines += ["```", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m nfkit.bench.scaleout", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="workspace (data/, one/, two/, enc-*/, scaleout.json/.md)")
    ap.add_argument("--nproc", type=int, default=2, help="processes of the torchrun runs (default 2)")
    ap.add_argument("--objects", type=int, default=6, help="objects per class (default 6)")
    ap.add_argument("--classes", default="airplane,car,chair,lamp", help="classes of the dataset")
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--fit-steps", type=int, default=60, help="fit-nerfs steps (cpu preset otherwise)")
    ap.add_argument("--epochs", type=int, default=12, help="pretrain-encoder epochs (default 12, the cpu preset's)")
    ap.add_argument("--enc-preset", default="cpu")
    ap.add_argument("--single-threads", type=int, default=1, help="OMP_NUM_THREADS of the single-process runs (0: unset)")
    a = ap.parse_args(argv)
    run(a.out, a.nproc, a.objects, a.classes, a.views, a.resolution, a.fit_steps, a.epochs, a.enc_preset, a.single_threads)
    print((a.out / "scaleout.md").read_text(), end="")


if __name__ == "__main__":
    main()
