"""Benchmark of ``fit-nerfs``: NeRFs per minute and held-out PSNR, batched vs one at a time.

``python -m nfkit.bench.fit --out DIR [--objects K] [--arch NAME ...] [--preset cpu] [--set k=v]``

1. generates a procedural dataset (``nfkit.data.synth``: K objects of K classes, 36 views,
   64×64 by default) in ``DIR/data``;
2. for every architecture (default mlp, tri, hash) fits the K objects from the shared init
   twice, in the same process: ``batched`` (one model with K NeRFs, one call of
   :func:`nfkit.fit.trainer.fit_batch`) and ``naive`` (K calls with one NeRF each);
3. measures the effect of the glibc malloc settings of :mod:`nfkit.fit.malloc` on the batched
   fit of one architecture, in two fresh subprocesses (the settings cannot be undone in-process);
4. writes ``DIR/fit_bench.json`` and ``DIR/fit_bench.md``.

NeRFs/min counts the fitting and the held-out evaluation, not loading images or writing
shards. The machine's load average is recorded: other processes on the same cores change the
timings a lot.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_CLASSES = ("airplane", "car", "chair", "table", "lamp", "sofa", "watercraft", "bench")


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on Linux
        return None


def _machine() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


def make_dataset(root: Path, n_objects: int, resolution: int, views: int) -> Path:
    from nfkit.data.synth import SynthConfig, generate_dataset

    if n_objects > len(DEFAULT_CLASSES):
        raise ValueError(f"--objects must be at most {len(DEFAULT_CLASSES)}")
    if not (root / "dataset.json").exists():
        config = SynthConfig(
            resolution=resolution, objects_per_class=1, views=views, classes=DEFAULT_CLASSES[:n_objects], seed=0
        )
        generate_dataset(root, config)
    return root


def load_scenes(root: Path, config, device: str = "cpu"):
    from nfkit.data.multiview import load_object, scan_dataset
    from nfkit.fit.trainer import scene_from_object

    entries = scan_dataset(root)
    return [scene_from_object(load_object(e, resolution=config.resolution or None), config.eval_every, device) for e in entries]


def run_modes(spec, scenes, config, modes=("batched", "naive")) -> dict:
    """Fit the scenes in each mode; returns mode -> numbers."""
    import math

    from nfkit.fit.trainer import fit_batch
    from nfkit.nerf.init import create_init

    init = create_init(spec, seed=0).params
    out = {}
    for mode in modes:
        load_before = _loadavg()
        t0 = time.perf_counter()
        if mode == "batched":
            results = fit_batch(spec, init, scenes, config, seed=config.seed)
        elif mode == "naive":
            results = [fit_batch(spec, init, [s], config, seed=config.seed + i)[0] for i, s in enumerate(scenes)]
        else:
            raise ValueError(f"unknown mode {mode!r}")
        seconds = time.perf_counter() - t0
        psnrs = [r.psnr for r in results]
        finite = [p for p in psnrs if math.isfinite(p)]
        out[mode] = {
            "nerfs": len(results),
            "seconds": seconds,
            "seconds_per_nerf": seconds / len(results),
            "nerfs_per_min": 60.0 * len(results) / seconds,
            "mean_psnr": sum(finite) / len(finite) if finite else math.nan,
            "min_psnr": min(finite) if finite else math.nan,
            "psnr": dict(zip([s.key for s in scenes], psnrs, strict=True)),
            "samples_per_step": sum(r.samples_per_step for r in results) / len(results),
            "loadavg_before": load_before,
            "loadavg_after": _loadavg(),
        }
        log.info("%s %s: %.1f s/NeRF, %.2f dB", spec.name, mode, seconds / len(results), out[mode]["mean_psnr"])
    return out


def _malloc_worker(args) -> None:
    """Subprocess: time a short batched fit with or without the malloc settings."""
    if args.malloc_worker == "on":
        from nfkit.fit.malloc import tune_malloc

        tune_malloc()
    from nfkit.fit.config import resolve_config
    from nfkit.fit.trainer import fit_batch
    from nfkit.nerf.init import create_init
    from nfkit.nerf.specs import get_arch

    config = resolve_config(args.preset, {**_overrides(args), "eval_every": 0, "steps": args.malloc_steps})
    spec = get_arch(args.arch[0] if args.arch else "mlp")
    scenes = load_scenes(Path(args.data), config)
    init = create_init(spec, seed=0).params
    fit_batch(spec, init, scenes[:1], resolve_config(args.preset, {"eval_every": 0, "steps": 2}))  # warm-up
    t0 = time.perf_counter()
    fit_batch(spec, init, scenes, config)
    seconds = time.perf_counter() - t0
    print(json.dumps({"malloc": args.malloc_worker, "arch": spec.name, "nerfs": len(scenes),
                      "steps": config.steps, "seconds": seconds, "ms_per_step": 1000 * seconds / config.steps}))


def _malloc_check(args, data: Path) -> dict:
    out = {}
    for setting in ("off", "on"):
        cmd = [sys.executable, "-m", "nfkit.bench.fit", "--out", str(args.out), "--malloc-worker", setting,
               "--data", str(data), "--preset", args.preset, "--malloc-steps", str(args.malloc_steps)]
        cmd += [x for kv in (args.set or []) for x in ("--set", kv)]
        cmd += [x for a in (args.arch or ["mlp"])[:1] for x in ("--arch", a)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"malloc worker failed: {proc.stderr.strip().splitlines()[-1:]}")
        out[setting] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _overrides(args) -> dict:
    from nfkit.fit.config import parse_set_options

    return parse_set_options(args.set)


def write_report(out: Path, report: dict) -> None:
    from nfkit.io.artifacts import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "fit_bench.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    lines = [
        "# fit-nerfs benchmark",
        "",
        f"{report['objects']} procedural objects ({', '.join(report['classes'])}), "
        f"{report['views']} views at {report['resolution']}×{report['resolution']}, preset `{report['preset']}` "
        f"({report['config']['steps']} steps, {report['config']['rays']} rays × {report['config']['samples']} samples, "
        f"grid {report['config']['grid_res']}³); held-out PSNR on black (every {report['config']['eval_every']}th view).",
        "",
        f"Machine: {report['machine']['cpu_count']} CPU cores, torch {report['machine']['torch']} "
        f"({report['machine']['torch_threads']} threads), CUDA: {report['machine']['cuda']}. "
        f"Load average {report['loadavg_start']:.2f} at the start, {report['loadavg_end']:.2f} at the end "
        "(other processes on the same cores slow every number down).",
        "",
        "| arch | mode | NeRFs/min | s/NeRF | mean PSNR (dB) | min PSNR (dB) | samples/step |",
        "|---|---|---|---|---|---|---|",
    ]
    for arch, modes in report["results"].items():
        for mode, r in modes.items():
            lines.append(
                f"| {arch} | {mode} | {r['nerfs_per_min']:.2f} | {r['seconds_per_nerf']:.2f} | "
                f"{r['mean_psnr']:.2f} | {r['min_psnr']:.2f} | {r['samples_per_step']:.0f} |"
            )
    if report.get("malloc"):
        m = report["malloc"]
        lines += [
            "",
            f"glibc malloc settings (`nfkit.fit.malloc.tune_malloc`, applied by `nfkit fit-nerfs`), batched "
            f"{m['on']['arch']} × {m['on']['nerfs']}, {m['on']['steps']} steps, fresh processes: "
            f"off {m['off']['ms_per_step']:.1f} ms/step, on {m['on']['ms_per_step']:.1f} ms/step.",
        ]
    lines += ["", f"Total {report['seconds']:.0f} s. Reproduce: `{report['command']}`.", ""]
    with atomic_path(out / "fit_bench.md") as tmp:
        tmp.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nfkit.bench.fit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (fit_bench.json, fit_bench.md, data/)")
    parser.add_argument("--objects", type=int, default=4, help="procedural objects (one per class)")
    parser.add_argument("--resolution", type=int, default=64, help="image size of the generated dataset")
    parser.add_argument("--views", type=int, default=36, help="views per object")
    parser.add_argument("--arch", action="append", help="architecture (repeatable; default mlp, tri, hash)")
    parser.add_argument("--preset", default="cpu", help="fit preset (default cpu)")
    parser.add_argument("--set", action="append", help="override a fit config key, key=value (repeatable)")
    parser.add_argument("--modes", default="batched,naive", help="comma-separated: batched, naive")
    parser.add_argument("--malloc-steps", type=int, default=30, help="steps of the malloc comparison (0 = skip it)")
    parser.add_argument("--malloc-worker", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.malloc_worker:
        _malloc_worker(args)
        return 0

    from nfkit.fit.malloc import tune_malloc

    tune_malloc()  # as the fit-nerfs CLI does
    import torch

    from nfkit.fit.config import resolve_config
    from nfkit.fit.trainer import fit_batch
    from nfkit.nerf.init import create_init
    from nfkit.nerf.specs import get_arch

    t0 = time.perf_counter()
    load_start = _loadavg()
    config = resolve_config(args.preset, _overrides(args))
    data = make_dataset(args.out / "data", args.objects, args.resolution, args.views)
    scenes = load_scenes(data, config)
    specs = [get_arch(a) for a in (args.arch or ["mlp", "tri", "hash"])]
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    # one-off costs (imports, first allocations) before any timing
    fit_batch(specs[0], create_init(specs[0], 0).params, scenes[:1], resolve_config(args.preset, {"steps": 2, "eval_every": 0}))
    results = {spec.name: run_modes(spec, scenes, config, modes) for spec in specs}
    malloc = _malloc_check(args, data) if args.malloc_steps > 0 else None
    report = {
        "objects": len(scenes),
        "classes": list(DEFAULT_CLASSES[: args.objects]),
        "views": args.views,
        "resolution": args.resolution,
        "preset": args.preset,
        "config": config.to_dict(),
        "machine": _machine(),
        "results": results,
        "malloc": malloc,
        "loadavg_start": load_start,
        "loadavg_end": _loadavg(),
        "seconds": time.perf_counter() - t0,
        "command": "python -m nfkit.bench.fit " + " ".join(sys.argv[1:] if argv is None else argv),
        "torch_threads": torch.get_num_threads(),
    }
    write_report(args.out, report)
    print(f"wrote {args.out / 'fit_bench.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
