"""Fitting one NeRF per object and architecture over a dataset: inits, sharding, resume.

Layout of the output folder::

    OUT/fit_config.json           resolved config (what ran: sampler=auto resolved), every
                                  architecture and init fingerprint fitted into OUT so far
    OUT/inits/                    shared inits created on first use (unless --init is given)
    OUT/<arch>/shard-<id>.h5      one nerf-shard per batch of NeRFs fitted together; <id> is a
                                  fingerprint of the keys the shard holds
                                  (:func:`nfkit.io.shards.fresh_shard_path`), never an
                                  existing name

A shard is written atomically when its batch finishes: killing a run loses at most the
NeRFs in flight.

Sharding (``--shard-index/--num-shards``, or torchrun's ``RANK/WORLD_SIZE``) deals whole
batches: batch ``j`` (objects ``j·B .. j·B+B-1`` of the sorted list, B = ``batch_nerfs``) goes
to shard ``j % N``. A NeRF's fit depends on its batch (the batch's random seed comes from its
first object, and the NeRFs of a batch draw rays and backgrounds from one generator), so dealing
batches rather than objects makes a sharded run fit the same batches, and write the same
weights, as a single process. The shared files are written by every shard, safely:
``inits/`` are deterministic (the same seed gives the same file) and written atomically;
``fit_config.json`` is rewritten (atomically) only when its content changes, and every shard of
one run computes the same content. A rerun skips the NeRFs already stored (key ``class/object_id``, read from
every shard in OUT/<arch>), whatever ``--classes/--split/--limit`` selected then or now, so no
rerun overwrites a finished NeRF. Fitting new NeRFs into OUT with another resolved config than
the one in fit_config.json is refused (one line listing the differences): a folder holds NeRFs
of one recipe. Each shard records its inputs' content fingerprints (init, object folders).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nfkit.config import config_diff
from nfkit.errors import ConfigError, IncompatibleError, UserError
from nfkit.fit.config import FitConfig
from nfkit.io.artifacts import atomic_path, fingerprint_bytes, fingerprint_paths
from nfkit.io.lock import output_folder
from nfkit.io.shards import (
    fresh_shard_path,
    plan_work,
    progress_bar,
    run_work,
    shard_from_env,
    shard_selection,
)
from nfkit.nerf.specs import ArchSpec
from nfkit.nerf.store import (
    NerfRecord,
    find_shards,
    nonfinite_params,
    read_nerf_shard,
    write_nerf_shard,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- inits
def resolve_inits(specs: Sequence[ArchSpec], init: str | Path | None, out: Path, seed: int = 0) -> dict:
    """name -> NerfInit for every spec. ``init``: an init file (used for every spec, which
    must match it) or a folder of inits (a missing one is created there); default OUT/inits.

    Checks every given file before creating anything.
    """
    from nfkit.nerf.init import check_init_matches, get_or_create_init, load_init

    path = Path(init) if init is not None else out / "inits"
    if init is not None and not path.exists():
        raise FileNotFoundError(f"--init {path}: no such file or folder")
    inits = {}
    if path.is_file():
        loaded = load_init(path)
        for spec in specs:
            check_init_matches(loaded, spec)
            inits[spec.name] = loaded
        return inits
    for spec in specs:
        inits[spec.name] = get_or_create_init(spec, path, seed=seed)
    return inits


def completed_keys(arch_dir: Path, spec: ArchSpec, init_fingerprint: str) -> set[str]:
    """Keys of NeRFs already stored under ``arch_dir``; refuses shards of another init/arch."""
    done: set[str] = set()
    if not arch_dir.is_dir():
        return done
    for shard in find_shards(arch_dir):
        records = read_nerf_shard(shard, load_params=False)
        if not records:
            continue
        first = records[0]
        if first.arch.fingerprint() != spec.fingerprint():
            raise IncompatibleError(
                f"{shard} holds architecture {first.arch.name!r}, not {spec.name!r}; use another --out"
            )
        if first.sin != "exact":
            raise IncompatibleError(
                f"{shard} holds NeRFs trained with tiny-cuda-nn's fast sine (imported), not nfkit fits; "
                "use another --out"
            )
        if first.init_fingerprint != init_fingerprint:
            raise IncompatibleError(
                f"{shard} was fitted from init {first.init_fingerprint}, not {init_fingerprint}; "
                "NeRFs of one architecture must share their init (use another --out or the same --init)"
            )
        done.update(r.key for r in records)
    return done


# ---------------------------------------------------------------------- driver
@dataclass
class ArchSummary:
    arch: str
    fitted: int = 0
    skipped: int = 0
    psnrs: list[float] = field(default_factory=list)
    seconds: float = 0.0
    psnr_on: dict[str, int] = field(default_factory=dict)
    """How many fitted NeRFs had their PSNR measured on which views (``NerfRecord.psnr_on``)."""

    @property
    def mean_psnr(self) -> float:
        vals = [p for p in self.psnrs if math.isfinite(p)]
        return sum(vals) / len(vals) if vals else math.nan

    @property
    def nerfs_per_min(self) -> float:
        return 60.0 * self.fitted / self.seconds if self.seconds > 0 else math.nan


@dataclass
class FitSummary:
    out: Path
    archs: dict[str, ArchSummary]
    shards: list[Path]
    seconds: float
    device: str
    backend: str
    sampler: str
    diverged: list[str] = field(default_factory=list)
    """``arch class/object_id`` of NeRFs whose fit diverged (non-finite weights); not saved."""

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "seconds": self.seconds,
            "device": self.device,
            "backend": self.backend,
            "archs": {
                k: {
                    "fitted": a.fitted,
                    "skipped": a.skipped,
                    "mean_psnr": a.mean_psnr,
                    "nerfs_per_min": a.nerfs_per_min,
                    "seconds": a.seconds,
                    "psnr_on": dict(a.psnr_on),
                }
                for k, a in self.archs.items()
            },
            "shards": [str(p) for p in self.shards],
            "diverged": list(self.diverged),
        }


def _load(load_object, entry, config: FitConfig):
    """Load an object at ``config.resolution`` (or natively when the images are smaller)."""
    obj = load_object(
        entry, max_views=config.max_views or None, resolution=config.resolution or None, shrink_only=True
    )
    if config.resolution and obj.width < config.resolution:
        log.info("%s: images are smaller than %d px; fitting at their size", entry.path, config.resolution)
    return obj


def _load_test_views(load_object, entry, config: FitConfig):
    """The object's ``transforms_test.json`` views at the training width (NeRF-synthetic
    convention), or None when it has none or nothing is evaluated."""
    if not config.eval_every or not (Path(entry.path) / "transforms_test.json").is_file():
        return None
    return load_object(
        entry, max_views=config.max_views or None, resolution=config.resolution or None,
        transforms="test", shrink_only=True,
    )


def resolve_backend(backend: str, device: str) -> str:
    if backend not in ("torch", "tcnn"):
        raise ConfigError(f"--backend {backend!r}: expected torch or tcnn")
    if backend == "tcnn":
        from nfkit.nerf.tcnn_backend import tcnn_available

        if not device.startswith("cuda") or not tcnn_available():
            log.warning("tiny-cuda-nn is not available on %s; fitting with the torch backend", device)
            return "torch"
    return backend


CONFIG_FILE = "fit_config.json"


def _entry_key(entry) -> str:
    """A dataset entry's NeRF key, ``class/object_id`` (``NerfRecord.key``)."""
    return f"{entry.class_name}/{entry.object_id}"


def batch_seed(seed: int, first_key: str) -> int:
    """The random seed of a batch: ``seed`` plus a number derived from its first object's key
    (not from its position in a filtered list, so a rerun with another filter draws the same)."""
    return seed + int(fingerprint_bytes(first_key.encode())[:7], 16)


def check_same_recipe(out: Path, config: FitConfig, backend: str) -> None:
    """Refuse to fit more NeRFs into ``out`` with another resolved config or backend."""
    path = out / CONFIG_FILE
    if not path.is_file():
        return
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{path}: unreadable; move it away or use another --out") from None
    old, new = dict(stored.get("fit", {})), config.to_dict()
    if old.get("sampler") == "auto":  # written unresolved by older nfkit: not comparable
        old.pop("sampler")
        new.pop("sampler")
    diffs = config_diff(old, new)
    if stored.get("backend", backend) != backend:
        diffs.append(f"backend: {stored.get('backend')} -> {backend}")
    if diffs:
        raise IncompatibleError(
            f"{out} holds NeRFs fitted with another config ({'; '.join(diffs)}); "
            "rerun with the same options, or use another --out"
        )


def _write_config(out: Path, config: FitConfig, specs, inits, extra: dict) -> dict:
    """fit_config.json: this run's resolved config, merged with the architectures and inits
    of earlier runs into the same folder (never dropping them)."""
    path = out / CONFIG_FILE
    old = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
    datasets = list(old.get("datasets", [old["dataset"]] if "dataset" in old else []))
    if extra.get("dataset") and extra["dataset"] not in datasets:
        datasets.append(extra["dataset"])
    resolved = {
        **old,
        "fit": config.to_dict(),
        "archs": {**old.get("archs", {}), **{s.name: s.to_dict() for s in specs}},
        "inits": {**old.get("inits", {}), **{s.name: inits[s.name].fingerprint for s in specs}},
        **extra,
        "datasets": datasets,
    }
    if resolved == old:  # e.g. another shard of this run wrote it already
        return resolved
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(resolved, indent=2, sort_keys=True) + "\n")
    return resolved


@dataclass
class BatchTask:
    """One batch of objects to fit with one architecture and write as one shard: everything a
    worker process needs (picklable)."""

    spec: ArchSpec
    init: Any
    batch: list
    config: FitConfig
    device: str
    backend: str
    run_config: dict
    out: Path
    fit_fn: Callable | None = None


@dataclass
class BatchOutcome:
    """What a fitted batch left: its shard (None if every fit diverged), and its figures."""

    arch: str
    path: Path | None
    psnrs: list[float]
    psnr_on: list[str]
    diverged: list[str]
    n_objects: int
    started: float
    finished: float

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def fit_batch_into(task: BatchTask) -> BatchOutcome:
    """Fit ``task``'s batch and write its shard atomically (the body of a worker process)."""
    from nfkit.data.multiview import load_object
    from nfkit.fit.trainer import fit_batch, scene_from_object

    spec, init_obj, batch, config, device = task.spec, task.init, task.batch, task.config, task.device
    started = time.perf_counter()  # CLOCK_MONOTONIC: comparable between processes of one machine
    folders = [e.path for e in batch]
    objects = [_load(load_object, e, config) for e in batch]
    tests = [_load_test_views(load_object, e, config) for e in batch]
    scenes = [scene_from_object(o, config.eval_every, device, v) for o, v in zip(objects, tests, strict=True)]
    results = (task.fit_fn or fit_batch)(
        spec, init_obj.params, scenes, config.for_family(spec.family), device=device, backend=task.backend,
        seed=batch_seed(config.seed, _entry_key(batch[0])),
    )
    finite, diverged = [], []
    for o, r, s, folder in zip(objects, results, scenes, folders, strict=True):
        bad = nonfinite_params(r.params)
        if bad:  # a diverged fit: not saved (a rerun tries it again)
            diverged.append(f"{spec.name} {o.class_name}/{o.object_id}")
            log.warning(
                "%s %s/%s: the fit diverged (NaN or inf in %s); not saved",
                spec.name, o.class_name, o.object_id, ", ".join(bad),
            )
        else:
            finite.append((o, r, s, folder))
    if not finite:
        return BatchOutcome(spec.name, None, [], [], diverged, len(batch), started, time.perf_counter())
    folders = [f for *_, f in finite]  # the shard's inputs are the objects it holds
    inputs = {"init": init_obj.fingerprint, "objects": fingerprint_paths(folders)}
    records = [
        NerfRecord(
            object_id=o.object_id, class_name=o.class_name, split=o.split, arch=spec,
            init_fingerprint=init_obj.fingerprint, params=r.params, psnr=r.psnr,
            fit_seconds=r.seconds, source=str(o.path), psnr_on=s.eval_on,
        )
        for o, r, s, _ in finite
    ]
    path = fresh_shard_path(task.out / spec.name, [r.key for r in records])
    write_nerf_shard(path, records, config=task.run_config, inputs=inputs, input_paths={"objects": folders})
    return BatchOutcome(spec.name, path, [r.psnr for r in records], [r.psnr_on for r in records], diverged,
                        len(batch), started, time.perf_counter())


def fit_dataset(
    dataset: str | Path,
    out: str | Path,
    specs: Sequence[ArchSpec],
    config: FitConfig,
    init: str | Path | None = None,
    init_seed: int = 0,
    shard_index: int = 0,
    num_shards: int = 1,
    device: str = "cpu",
    backend: str = "torch",
    classes: Sequence[str] | None = None,
    split: str | None = None,
    limit: int = 0,
    progress: bool = False,
    fit_fn: Callable | None = None,
    workers: int = 1,
) -> FitSummary:
    """Fit every (object, architecture) of ``dataset`` not yet in ``out``.

    ``fit_fn`` replaces :func:`nfkit.fit.trainer.fit_batch` (tests use it to simulate a
    crash); it takes the same arguments. ``workers``: processes fitting batches side by side
    on the CPU (:func:`nfkit.fit.workers.plan_workers`; 0 = auto, 1 = this process).
    """
    from nfkit.fit.trainer import check_fit_budget

    t0 = time.perf_counter()
    dataset, out = Path(dataset), Path(out)
    if not dataset.is_dir():
        raise FileNotFoundError(f"{dataset}: no such dataset folder")
    if limit < 0:
        raise ConfigError(f"--limit must be >= 0 (0 = all objects), got {limit}")
    shard_selection(0, shard_index, num_shards)  # validates the shard options
    from nfkit.fit.workers import plan_workers

    plan_workers(workers, device, 1)  # validates --workers before anything is written
    for spec in specs:
        check_fit_budget(config.for_family(spec.family), device)
    with output_folder(out, "--out", shard=(shard_index, num_shards)):  # refused if another run writes there
        return _fit_into(dataset, out, specs, config, init, init_seed, shard_index, num_shards, device,
                         backend, classes, split, limit, progress, fit_fn, t0, workers)


def _fit_into(dataset, out, specs, config, init, init_seed, shard_index, num_shards, device, backend,
              classes, split, limit, progress, fit_fn, t0, workers=1) -> FitSummary:
    from nfkit.data.multiview import scan_dataset

    if not specs:
        raise UserError("no architectures to fit")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UserError(f"architecture listed twice: {names}")
    entries = sorted(
        scan_dataset(dataset, classes=list(classes) if classes else None, split=split),
        key=lambda e: (e.class_name, e.object_id),
    )
    if not entries:
        raise UserError(f"{dataset}: no objects found")
    if limit:
        entries = entries[:limit]
    backend = resolve_backend(backend, device)
    config = config.resolved(device=device)

    inits = resolve_inits(specs, init, out, seed=init_seed)  # validates before anything is written
    plans = {
        s.name: plan_work(
            entries, _entry_key, completed_keys(out / s.name, s, inits[s.name].fingerprint),
            shard_index, num_shards, config.batch_nerfs, shard_group=config.batch_nerfs,
        )
        for s in specs
    }
    if any(p.todo for p in plans.values()):
        check_same_recipe(out, config, backend)
        _write_config(out, config, specs, inits, {"dataset": str(dataset.resolve()), "device": device, "backend": backend})
    summary = {s.name: ArchSummary(s.name, skipped=plans[s.name].skipped) for s in specs}
    for s in specs:
        if summary[s.name].skipped:
            log.info("%s: %d NeRF(s) already fitted, skipping them", s.name, summary[s.name].skipped)
    shards: list[Path] = []
    diverged: list[str] = []
    run_config = {"fit": config.to_dict(), "backend": backend, "device": device, "dataset": str(dataset.resolve())}
    spans: dict[str, list[float]] = {}

    def task(spec: ArchSpec, batch: list) -> BatchTask:
        return BatchTask(spec, inits[spec.name], list(batch), config, device, backend, run_config, out, fit_fn)

    def record(outcome: BatchOutcome) -> BatchOutcome:
        """The parent's bookkeeping of a finished batch (whichever process fitted it)."""
        diverged.extend(outcome.diverged)  # each one was logged where it was fitted
        if outcome.path is None:
            return outcome
        shards.append(outcome.path)
        arch_sum = summary[outcome.arch]
        arch_sum.fitted += len(outcome.psnrs)
        arch_sum.psnrs.extend(outcome.psnrs)
        for on in outcome.psnr_on:
            arch_sum.psnr_on[on] = arch_sum.psnr_on.get(on, 0) + 1
        arch_sum.seconds += outcome.seconds
        span = spans.setdefault(outcome.arch, [outcome.started, outcome.finished])
        span[0], span[1] = min(span[0], outcome.started), max(span[1], outcome.finished)
        log.info("%s: wrote %s (%d NeRFs, mean PSNR %.2f dB)", outcome.arch, outcome.path, len(outcome.psnrs),
                 sum(outcome.psnrs) / len(outcome.psnrs))
        return outcome

    from nfkit.fit.workers import plan_workers, worker_pool

    batches = [(s, b) for s in specs for b in plans[s.name].batches()]
    n_workers, threads = plan_workers(workers, device, len(batches))
    if n_workers <= 1:
        for spec in specs:
            for _batch, _outcome in run_work(
                plans[spec.name], lambda b, spec=spec: record(fit_batch_into(task(spec, b))), progress=progress,
                desc=f"fit-nerfs {spec.name}", unit="nerf",
                note=lambda _r, spec=spec: f"PSNR {summary[spec.name].mean_psnr:.2f} dB",
            ):
                pass
    else:
        log.info("fitting %d batches in %d worker processes of %d thread(s)", len(batches), n_workers, threads)
        label = next(iter(plans.values())).label
        total = sum(len(b) for _s, b in batches)
        with progress_bar(total, f"fit-nerfs {label}".strip(), "nerf", progress) as bar, \
                worker_pool(n_workers, threads) as run:
            for _task, outcome in run(fit_batch_into, [task(s, b) for s, b in batches]):
                record(outcome)
                bar.update(outcome.n_objects)
                bar.note(", ".join(f"{a} {summary[a].mean_psnr:.2f} dB" for a in summary if summary[a].fitted))
        for arch, (t_start, t_end) in spans.items():
            summary[arch].seconds = t_end - t_start  # wall time: the workers' batches overlap
    return FitSummary(
        out, summary, shards, time.perf_counter() - t0, device, backend, config.sampler, diverged
    )


__all__ = [
    "ArchSummary",
    "FitSummary",
    "completed_keys",
    "fit_dataset",
    "resolve_inits",
    "shard_from_env",
    "shard_selection",
]
