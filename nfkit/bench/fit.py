"""Benchmark of ``fit-nerfs``: NeRFs per minute and held-out PSNR, batched vs one at a time.

``python -m nfkit.bench.fit --out DIR [--data DATASET] [--objects K] [--arch NAME ...] [--preset cpu] [--set k=v]``

1. generates a procedural dataset (``nfkit.data.synth``: K objects of K classes, 36 views,
   64×64 by default) in ``DIR/data``, or reads ``--data`` (e.g. the real objects of
   ``nfkit/bench/realset/objects``, whose separate test cameras give the test PSNR);
2. for every architecture (default mlp, tri, hash) fits the objects from the shared init
   twice, in the same process, with the recipe of its family (``FitConfig.for_family``):
   ``batched`` (batches of ``batch_nerfs`` NeRFs, one :func:`nfkit.fit.trainer.fit_batch`
   call each, as ``nfkit fit-nerfs`` runs) and ``one-at-a-time`` (one call per NeRF);
   every fitted NeRF is then rendered again as any later stage renders it (the grid rebuilt
   from its density) for the full-image PSNR and the foreground PSNR (pixels where the object
   is, in the ground truth or the render: the black background inflates the full figure);
3. fits ``--naive-objects`` of the same objects with the naive torch loop of
   :mod:`nfkit.bench.naive_fit` (uniform samples, no grid, one NeRF at a time) until it reaches
   nfkit's test PSNR for that object, or ``--naive-budget`` times nfkit's time is spent;
4. counts the MLP FLOPs a fit spends (the samples the field saw × 2·Σ in·out of its layers × 3
   for forward and backward, the first layer's inputs as the fit evaluates them: no constant-1
   padding, and after ``band_cut`` the lower bands only; encodings and grid updates not
   counted) against the machine's measured fp32 matmul rate;
5. measures the effect of the glibc malloc settings of :mod:`nfkit.fit.malloc` on the batched
   fit of one architecture, in two fresh subprocesses (the settings cannot be undone in-process);
6. writes ``DIR/fit_bench.json`` and ``DIR/fit_bench.md``.

NeRFs/min counts the fitting and the held-out evaluation, not loading images or writing
shards. The machine's load average is recorded: other processes on the same cores change the
timings a lot; the ratios of one run are what compares.
"""

from __future__ import annotations

import argparse
import dataclasses
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


def load_scenes(root: Path, config, device: str = "cpu", only: slice | None = None):
    """Scenes of every object (or of ``entries[only]``), as ``fit-nerfs`` loads them (test
    cameras when there are)."""
    from nfkit.data.multiview import load_object, scan_dataset
    from nfkit.fit.driver import _load, _load_test_views
    from nfkit.fit.trainer import scene_from_object

    entries = scan_dataset(root)
    if only is not None:
        entries = entries[only]
    return [
        scene_from_object(_load(load_object, e, config), config.eval_every, device, _load_test_views(load_object, e, config))
        for e in entries
    ]


def mlp_flops_per_sample(spec, bands: int | None = None, levels: int | None = None) -> int:
    """Forward FLOPs of the field's MLP for one sample: 2 · Σ in·out over its layers; with
    ``bands``, the first layer reads only the frequency encoding's first ``bands`` bands (and
    the tri-plane channels): ``FitConfig.band_cut``; with ``levels``, only the hash grid's first
    ``levels`` levels (``level_cut``). The constant-1 padding inputs are summed into a bias, so
    they count as none (the first layer of the hash family reads 8 of 16)."""
    total = 0
    for name, (out_dim, in_dim) in ((n, s) for n, s in spec.param_shapes().items() if n.startswith("mlp.")):
        if name == "mlp.0":
            in_dim = spec.encoding_dim
            if bands is not None and spec.freq_bands:
                in_dim -= 3 * 2 * (spec.freq_bands - min(bands, spec.freq_bands))
            if levels is not None and spec.family == "hash":
                in_dim -= spec.hash_features * (spec.hash_levels - min(levels, spec.hash_levels))
        total += 2 * out_dim * in_dim
    return total


def mlp_gflop_per_nerf(spec, config, samples_per_step: float) -> float:
    """MLP GFLOP (forward and backward: 3× the forward) one fit spends on its training samples,
    the steps after ``band_cut`` (``level_cut``) counted with the lower bands (levels) only."""
    full = cut = mlp_flops_per_sample(spec)
    start = 0.0
    if config.band_cut > 0 and config.band_l2 > 0 and spec.freq_bands > config.band_l2_from:
        start, cut = config.band_cut, mlp_flops_per_sample(spec, bands=config.band_l2_from)
    elif config.level_cut > 0 and spec.family == "hash" and spec.hash_levels > config.level_cut_from:
        start, cut = config.level_cut, mlp_flops_per_sample(spec, levels=config.level_cut_from)
    cut_steps = config.steps - int(round(start * config.steps)) if start > 0 else 0
    return 3 * samples_per_step * (full * (config.steps - cut_steps) + cut * cut_steps) / 1e9


def matmul_rate(seconds: float = 1.0, n: int = 1024) -> float:
    """The machine's fp32 matmul rate (GFLOP/s) on (n × n) @ (n × n), all torch threads."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
    return 2.0 * n**3 * count / (time.perf_counter() - t0) / 1e9


def render_psnrs(spec, results, scenes, config, pictures: list | None = None) -> tuple[list[float], list[float]]:
    """(full-image, foreground) test PSNR of fitted NeRFs rendered as every later stage renders
    them (:func:`nfkit.render.renderer.render_rays`, grid rebuilt from the density). Foreground:
    pixels with ground-truth alpha > 0.5 or rendered opacity > 0.5."""
    import math

    import numpy as np
    import torch

    from nfkit.render.renderer import render_rays

    full, fg = [], []
    for r, s in zip(results, scenes, strict=True):
        if not len(s.eval_rgba):
            full.append(math.nan)
            fg.append(math.nan)
            continue
        params = {k: torch.from_numpy(np.asarray(v))[None] for k, v in r.params.items()}
        out = render_rays(spec, params, s.eval_origins[None], s.eval_dirs[None], n_samples=config.render_samples,
                          grid_resolution=config.grid_res)
        err = ((out.rgb[0].clamp(0, 1) - s.eval_rgba[:, :3] * s.eval_rgba[:, 3:]) ** 2).mean(dim=-1)
        mask = (s.eval_rgba[:, 3] > 0.5) | (out.opacity[0] > 0.5)
        if pictures is not None:  # the first 4 test views: ground truth above the render
            h, w = s.height, s.width
            k = min(4, len(s.eval_rgba) // (h * w))
            gt = (s.eval_rgba[: k * h * w, :3] * s.eval_rgba[: k * h * w, 3:]).reshape(k, h, w, 3)
            rgb = out.rgb[0, : k * h * w].clamp(0, 1).reshape(k, h, w, 3)
            pictures.append(torch.cat([torch.cat(list(gt), dim=1), torch.cat(list(rgb), dim=1)], dim=0).numpy())
        full.append(-10.0 * math.log10(max(float(err.mean()), 1e-12)))
        fg.append(-10.0 * math.log10(max(float(err[mask].mean()), 1e-12)) if mask.any() else math.nan)
    return full, fg


def _mean(values) -> float:
    import math

    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


_WARM = False


def _worker_fit(task: tuple) -> tuple[list, float, float]:
    """Worker process of the ``workers`` mode: load one batch's scenes, warm up once per
    process (as the one-process modes are warmed up), fit the batch; returns its results and
    the fit's start and end (``perf_counter``: CLOCK_MONOTONIC, comparable between processes)."""
    global _WARM
    from nfkit.fit.trainer import fit_batch

    spec, init, data, start, stop, config, seed = task
    scenes = load_scenes(data, config, only=slice(start, stop))
    if not _WARM:
        fit_batch(spec, init, scenes[:1], dataclasses.replace(config, steps=2, eval_every=0))
        _WARM = True
    t0 = time.perf_counter()
    results = fit_batch(spec, init, scenes, config, seed=seed)
    return results, t0, time.perf_counter()


def _fit_in_workers(spec, init, scenes, config, data: Path, workers: int) -> tuple[list, float, float]:
    """The batches of ``scenes`` fitted as ``fit-nerfs --workers`` fits them (the cores shared
    among the workers); returns the results in order, the span of the fits (first start to
    last end: the workers' start-up and image loading are left out, as the other modes leave
    out loading) and the whole wall time."""
    from nfkit.fit.workers import plan_workers, worker_pool

    starts = list(range(0, len(scenes), config.batch_nerfs))
    n, threads = plan_workers(workers, "cpu", len(starts))
    tasks = [(spec, init, data, a, a + config.batch_nerfs, config, config.seed + a) for a in starts]
    t0 = time.perf_counter()
    done = {}
    with worker_pool(n, threads) as run:
        for task, out in run(_worker_fit, tasks):
            done[task[3]] = out
    wall = time.perf_counter() - t0
    results = [r for a in starts for r in done[a][0]]
    span = max(out[2] for out in done.values()) - min(out[1] for out in done.values())
    return results, span, wall


def run_modes(spec, scenes, config, modes=("batched", "one-at-a-time"), picture: Path | None = None,
              data: Path | None = None, workers: int = 2) -> dict:
    """Fit the scenes in each mode with the recipe of the spec's family; returns mode -> numbers.
    ``picture``: a PNG of the batched NeRFs' first test views (rows: ground truth, render).
    Mode ``workers`` fits the same batches with the same seeds in ``workers`` worker processes
    (as ``fit-nerfs --workers`` does; the cores shared among them), reading the scenes from
    ``data``; its seconds are the span of the fits, its ``wall_seconds`` the whole run."""
    import math

    from nfkit.fit.trainer import fit_batch
    from nfkit.nerf.init import create_init

    config = config.for_family(spec.family)
    init = create_init(spec, seed=0).params
    picture_mode = next((m for m in ("batched", "workers") if m in modes), None)
    out = {}
    for mode in modes:
        load_before = _loadavg()
        rate_before = matmul_rate(0.5)  # the machine's speed now: on shared hosts it changes within minutes
        t0 = time.perf_counter()
        wall = None
        if mode == "workers":
            if data is None:
                raise ValueError("mode 'workers' needs the dataset folder")
            results, seconds, wall = _fit_in_workers(spec, init, scenes, config, data, workers)
        elif mode == "batched":
            results = []
            for start in range(0, len(scenes), config.batch_nerfs):
                results += fit_batch(spec, init, scenes[start : start + config.batch_nerfs], config, seed=config.seed + start)
        elif mode in ("one-at-a-time", "naive"):  # "naive": the name of older reports
            results = [fit_batch(spec, init, [s], config, seed=config.seed + i)[0] for i, s in enumerate(scenes)]
        else:
            raise ValueError(f"unknown mode {mode!r}")
        if wall is None:
            seconds = time.perf_counter() - t0
        rate_after = matmul_rate(0.5)
        pictures = [] if picture is not None and mode == picture_mode else None
        full, fg = render_psnrs(spec, results, scenes, config, pictures)
        if pictures:
            import numpy as np
            from PIL import Image

            picture.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((np.concatenate(pictures, axis=0) * 255).round().astype(np.uint8)).save(picture)
        samples = _mean([r.samples_per_step for r in results])
        out[mode] = {
            "nerfs": len(results),
            "seconds": seconds,
            "wall_seconds": seconds if wall is None else wall,
            "seconds_per_nerf": seconds / len(results),
            "eval_seconds_per_nerf": sum(r.eval_seconds for r in results) / len(results),
            "nerfs_per_min": 60.0 * len(results) / seconds,
            "mean_psnr": _mean(full),
            "min_psnr": min((p for p in full if math.isfinite(p)), default=math.nan),
            "mean_fg_psnr": _mean(fg),
            "trainer_psnr": _mean([r.psnr for r in results]),
            "psnr": dict(zip([s.key for s in scenes], full, strict=True)),
            "fg_psnr": dict(zip([s.key for s in scenes], fg, strict=True)),
            "samples_per_step": samples,
            "steps": config.steps,
            "rays": config.rays,
            "mlp_gflop_per_nerf": mlp_gflop_per_nerf(spec, config, samples),
            "loadavg_before": load_before,
            "matmul_gflops_before": rate_before,
            "matmul_gflops_after": rate_after,
            "loadavg_after": _loadavg(),
        }
        log.info("%s %s: %.1f s/NeRF, %.2f dB (foreground %.2f)", spec.name, mode, seconds / len(results),
                 out[mode]["mean_psnr"], out[mode]["mean_fg_psnr"])
    return out


def naive_compare(spec, scenes, config, reference: dict, n_objects: int, budget: float) -> dict:
    """The naive loop on the first ``n_objects`` scenes, each until nfkit's PSNR for it.

    The host's speed moves within minutes, so nfkit's side is timed next to each naive run:
    the object's batch is fitted again (the batched mode's batch and seed, so the same NeRFs)
    right before and right after it, and the ratio uses the mean of the two."""
    from nfkit.bench.naive_fit import naive_fit
    from nfkit.fit.trainer import fit_batch
    from nfkit.nerf.init import create_init

    config = config.for_family(spec.family)
    init = create_init(spec, seed=0).params
    bs = config.batch_nerfs

    def nfkit_seconds(start: int) -> float:
        # fitting time on both sides: the naive loop's PSNR checks are not timed, so nfkit's
        # held-out evaluation at the end of each fit is left out too
        results = fit_batch(spec, init, scenes[start : start + bs], config, seed=config.seed + start)
        return _mean([r.seconds - r.eval_seconds for r in results])

    rows = []
    last = None  # (batch start, seconds) of the fit just done: the next object's "before" if it shares the batch
    for i, s in enumerate(scenes[:n_objects]):
        target = reference["psnr"][s.key]
        start = i // bs * bs
        before = last[1] if last is not None and last[0] == start else nfkit_seconds(start)
        r = naive_fit(spec, init, s, config, target, budget * before)
        after = nfkit_seconds(start)
        last = (start, after)
        nfkit_s = 0.5 * (before + after)
        rows.append({"object": s.key, "target_psnr": target, **r, "nfkit_seconds_before": before,
                     "nfkit_seconds_after": after, "nfkit_seconds": nfkit_s, "speedup": r["seconds_to_target"] / nfkit_s})
        log.info("%s naive %s: %.2f s to %.2f dB (target %.2f%s); nfkit %.2f / %.2f s", spec.name, s.key,
                 r["seconds_to_target"], r["psnr"], target, "" if r["reached"] else ", not reached", before, after)
    return {"nfkit_seconds_per_nerf": reference["seconds_per_nerf"] - reference.get("eval_seconds_per_nerf", 0.0),
            "budget_factor": budget, "objects": rows,
            "speedup": _mean([r["speedup"] for r in rows]), "all_reached": all(r["reached"] for r in rows)}


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
    name = report.get("name", "fit_bench")
    with atomic_path(out / f"{name}.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    cfg = report["config"]
    test = "the objects' separate test cameras" if report.get("test_views") else f"held-out training views (every {cfg['eval_every']}th)"
    lines = [
        f"# fit-nerfs benchmark: {report['dataset']}",
        "",
        f"{report['objects']} objects ({', '.join(report['classes'])}), {report['views']} views at "
        f"{report['resolution']}×{report['resolution']}, preset `{report['preset']}`; test PSNR on {test}, on black, "
        "of each NeRF rendered again as the later stages render it (grid rebuilt from its density). "
        "Foreground PSNR: pixels where the object is in the ground truth or the render.",
        "",
        f"Machine: {report['machine']['cpu_count']} CPU cores, torch {report['machine']['torch']} "
        f"({report['machine']['torch_threads']} threads), CUDA: {report['machine']['cuda']}; fp32 matmul "
        f"{report['matmul_gflops']:.0f} GFLOP/s (1024² @ 1024²) at the start, and before and after each row below "
        f"(the % of peak uses the mean of those two). Load average {report['loadavg_start']:.2f} at the "
        f"start, {report['loadavg_end']:.2f} at the end (other processes on the same cores slow every number down).",
        "",
        "| arch | mode | steps × rays | NeRFs/min | s/NeRF | PSNR (dB) | foreground PSNR | min PSNR | samples/step | MLP GFLOP/NeRF | matmul GFLOP/s before / after | % of matmul peak |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    peak = report["matmul_gflops"]
    for arch, modes in report["results"].items():
        for mode, r in modes.items():
            gflop = r.get("mlp_gflop_per_nerf", float("nan"))
            before, after = r.get("matmul_gflops_before"), r.get("matmul_gflops_after")
            rate = 0.5 * (before + after) if before and after else peak  # older reports: the start's rate
            rates = f"{before:.0f} / {after:.0f}" if before and after else "–"
            lines.append(
                f"| {arch} | {mode} | {r.get('steps', cfg['steps'])} × {r.get('rays', cfg['rays'])} | {r['nerfs_per_min']:.1f} | "
                f"{r['seconds_per_nerf']:.2f} | {r['mean_psnr']:.2f} | {r.get('mean_fg_psnr', float('nan')):.2f} | "
                f"{r['min_psnr']:.2f} | {r['samples_per_step']:.0f} | {gflop:.1f} | {rates} | {100 * gflop / r['seconds_per_nerf'] / rate:.0f} % |"
            )
    walls = [(arch, m["workers"]) for arch, m in report["results"].items() if "workers" in m]
    if walls:
        n = report.get("workers", 2)
        lines += [
            "",
            f"Mode `workers`: the same batches with the same seeds, fitted in {n} worker processes "
            f"(`nfkit fit-nerfs --workers {n}`; the cores shared among them), a free worker taking the next "
            "batch. Its NeRFs/min count the span of the fits (the first fit's start to the last one's end); "
            "each worker's start-up (importing torch, a warm-up fit) and image loading are left out, as the "
            "one-process modes leave out loading and their one warm-up. The whole run, start-up included: "
            + ", ".join(f"{arch} {r['wall_seconds']:.1f} s against {r['seconds']:.1f} s" for arch, r in walls) + ".",
        ]
    if report.get("naive"):
        lines += [
            "",
            "Naive torch loop (`nfkit.bench.naive_fit`: uniform samples, no grid, one NeRF at a time, the same "
            "rays, samples and learning rates), run until it reaches nfkit's test PSNR for the object. Both "
            "times are fitting only: the naive loop's PSNR checks are not timed, and neither is nfkit's held-out "
            "evaluation at the end of a fit (the NeRFs/min above include it). The naive loop checks its PSNR "
            "every 20 steps; its time is where the line between the last check below the target and the first "
            "above it crosses the target (the time of that first check in brackets). The host's speed moves "
            "within minutes, so nfkit's time is taken next to each naive run: the object's batch fitted again "
            "(the same NeRFs) right before and right after it, the ratio on the mean of the two:",
            "",
            "| arch | object | nfkit PSNR | nfkit fitting s/NeRF (batched: before / after the naive loop) | naive s (at the check) | naive PSNR | naive / nfkit time |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for arch, n in report["naive"].items():
            for row in n["objects"]:
                mark = "" if row["reached"] else " (not reached: ≥)"
                timed = (f"{row['nfkit_seconds_before']:.2f} / {row['nfkit_seconds_after']:.2f}" if "nfkit_seconds" in row
                         else f"{n['nfkit_seconds_per_nerf']:.2f}")  # older reports: the batched row's
                lines.append(
                    f"| {arch} | {row['object']} | {row['target_psnr']:.2f} | {timed} | "
                    f"{row.get('seconds_to_target', row['seconds']):.2f} ({row['seconds']:.2f}) | {row['psnr']:.2f} | "
                    f"{row['speedup']:.1f}×{mark} |"
                )
    if report.get("malloc"):
        m = report["malloc"]
        lines += [
            "",
            f"glibc malloc settings (`nfkit.fit.malloc.tune_malloc`, applied by `nfkit fit-nerfs`), batched "
            f"{m['on']['arch']} × {m['on']['nerfs']}, {m['on']['steps']} steps, fresh processes: "
            f"off {m['off']['ms_per_step']:.1f} ms/step, on {m['on']['ms_per_step']:.1f} ms/step.",
        ]
    lines += ["", "Test views of every batched NeRF (the workers' when only they ran; rows: ground truth, render; one pair per object): "
              + ", ".join(f"`{name}-{arch}.png`" for arch in report["results"]) + "."]
    lines += ["", f"Total {report['seconds']:.0f} s. Reproduce: `{report['command']}`.", ""]
    with atomic_path(out / f"{name}.md") as tmp:
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
    parser.add_argument("--modes", default="batched,one-at-a-time,workers",
                        help="comma-separated: batched (one process), one-at-a-time (one process, one NeRF per fit), "
                             "workers (the batches in worker processes, as fit-nerfs runs them)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the workers mode (default 2)")
    parser.add_argument("--naive-objects", type=int, default=2, help="objects fitted with the naive torch loop (0 = none)")
    parser.add_argument("--naive-budget", type=float, default=15.0,
                        help="the naive loop stops after this many times nfkit's seconds per NeRF")
    parser.add_argument("--malloc-steps", type=int, default=30, help="steps of the malloc comparison (0 = skip it)")
    parser.add_argument("--malloc-worker", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help="an existing dataset instead of a generated one, e.g. nfkit/bench/realset/objects")
    parser.add_argument("--name", default="", help="report file stem (default fit_bench, or fit_bench_<dataset folder>)")
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
    if args.data:
        data = Path(args.data)
        if not data.is_dir():
            parser.error(f"--data {data}: no such dataset folder")
    else:
        data = make_dataset(args.out / "data", args.objects, args.resolution, args.views)
    scenes = load_scenes(data, config)
    if not scenes:
        parser.error(f"{data}: no objects")
    specs = [get_arch(a) for a in (args.arch or ["mlp", "tri", "hash"])]
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    peak = matmul_rate()
    # one-off costs (imports, first allocations) before any timing
    fit_batch(specs[0], create_init(specs[0], 0).params, scenes[:1], resolve_config(args.preset, {"steps": 2, "eval_every": 0}))
    name = args.name or ("fit_bench" if not args.data else f"fit_bench_{data.resolve().name}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    results = {spec.name: run_modes(spec, scenes, config, modes, args.out / f"{name}-{spec.name}.png", data, args.workers)
               for spec in specs}
    naive = {}
    if args.naive_objects > 0 and "batched" in modes:
        naive = {spec.name: naive_compare(spec, scenes, config, results[spec.name]["batched"], args.naive_objects,
                                          args.naive_budget) for spec in specs}
    malloc = _malloc_check(args, data) if args.malloc_steps > 0 else None
    report = {
        "name": name,
        "dataset": str(data) if args.data else "procedural",
        "objects": len(scenes),
        "classes": sorted({s.key.split("/")[0] for s in scenes}),
        "views": int(len(scenes[0].train_rgba) // (scenes[0].height * scenes[0].width)) + (0 if scenes[0].eval_on == "test-views" else len(scenes[0].eval_views)),
        "test_views": scenes[0].eval_on == "test-views",
        "resolution": scenes[0].width,
        "preset": args.preset,
        "config": config.to_dict(),
        "machine": _machine(),
        "matmul_gflops": peak,
        "results": results,
        "naive": naive,
        "malloc": malloc,
        "loadavg_start": load_start,
        "loadavg_end": _loadavg(),
        "seconds": time.perf_counter() - t0,
        "command": "python -m nfkit.bench.fit " + " ".join(sys.argv[1:] if argv is None else argv),
        "torch_threads": torch.get_num_threads(),
        "workers": args.workers,
    }
    write_report(args.out, report)
    print(f"wrote {args.out / (name + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
