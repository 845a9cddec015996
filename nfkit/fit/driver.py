"""Fitting one NeRF per object and architecture over a dataset: inits, sharding, resume.

Layout of the output folder::

    OUT/fit_config.json           resolved config, architectures and init fingerprints
    OUT/inits/                    shared inits created on first use (unless --init is given)
    OUT/<arch>/shard-<k>.h5       one nerf-shard per batch of NeRFs fitted together; k is the
                                  position of the batch's first object in the dataset's
                                  (sorted) object list, so names never collide

A shard is written atomically when its batch finishes: killing a run loses at most the
NeRFs in flight, and a rerun skips the NeRFs already stored (key ``class/object_id``, read
from shard metadata only).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nfkit.errors import ConfigError, IncompatibleError, UserError
from nfkit.fit.config import FitConfig
from nfkit.io.artifacts import atomic_path
from nfkit.nerf.specs import ArchSpec
from nfkit.nerf.store import NerfRecord, find_shards, read_nerf_shard, write_nerf_shard

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- sharding
def shard_selection(n_items: int, shard_index: int, num_shards: int) -> list[int]:
    """Positions i with ``i % num_shards == shard_index``."""
    if num_shards < 1:
        raise ConfigError(f"num_shards must be >= 1, got {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise ConfigError(f"shard index {shard_index} is outside 0..{num_shards - 1}")
    return [i for i in range(n_items) if i % num_shards == shard_index]


def shard_from_env(
    shard_index: int | None, num_shards: int | None, env: dict[str, str] | None = None
) -> tuple[int, int]:
    """Explicit values win; else torchrun's ``RANK``/``WORLD_SIZE``; else (0, 1)."""
    env = os.environ if env is None else env
    if shard_index is None and num_shards is None and "WORLD_SIZE" in env:
        try:
            return int(env.get("RANK", "0")), int(env["WORLD_SIZE"])
        except ValueError:
            raise ConfigError(
                f"RANK={env.get('RANK')!r} / WORLD_SIZE={env.get('WORLD_SIZE')!r} are not integers"
            ) from None
    if (shard_index is None) != (num_shards is None):
        raise ConfigError("give both --shard-index and --num-shards, or neither")
    return (shard_index or 0, num_shards or 1)


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
            raise ValueError(
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


def _write_config(out: Path, config: FitConfig, specs, inits, extra: dict) -> dict:
    resolved = {
        "fit": config.to_dict(),
        "archs": {s.name: s.to_dict() for s in specs},
        "inits": {s.name: inits[s.name].fingerprint for s in specs},
        **extra,
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "fit_config.json") as tmp:
        tmp.write_text(json.dumps(resolved, indent=2, sort_keys=True) + "\n")
    return resolved


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
) -> FitSummary:
    """Fit every (object, architecture) of ``dataset`` not yet in ``out``.

    ``fit_fn`` replaces :func:`nfkit.fit.trainer.fit_batch` (tests use it to simulate a
    crash); it takes the same arguments.
    """
    from nfkit.data.multiview import load_object, scan_dataset
    from nfkit.fit.trainer import fit_batch, scene_from_object

    t0 = time.perf_counter()
    dataset, out = Path(dataset), Path(out)
    if not dataset.is_dir():
        raise FileNotFoundError(f"{dataset}: no such dataset folder")
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
    selected = shard_selection(len(entries), shard_index, num_shards)
    backend = resolve_backend(backend, device)

    inits = resolve_inits(specs, init, out, seed=init_seed)  # validates before anything is written
    done = {s.name: completed_keys(out / s.name, s, inits[s.name].fingerprint) for s in specs}
    _write_config(
        out,
        config,
        specs,
        inits,
        {"dataset": str(dataset), "device": device, "backend": backend},
    )
    fit = fit_fn or fit_batch
    summary = {s.name: ArchSummary(s.name) for s in specs}
    shards: list[Path] = []
    todo = {
        s.name: [i for i in selected if f"{entries[i].class_name}/{entries[i].object_id}" not in done[s.name]]
        for s in specs
    }
    for s in specs:
        summary[s.name].skipped = len(selected) - len(todo[s.name])
        if summary[s.name].skipped:
            log.info("%s: %d NeRF(s) already fitted, skipping them", s.name, summary[s.name].skipped)

    bar = None
    total = sum(len(v) for v in todo.values())
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="nerf", desc="fit-nerfs")
    try:
        for spec in specs:
            init_obj = inits[spec.name]
            positions = todo[spec.name]
            for start in range(0, len(positions), config.batch_nerfs):
                batch = positions[start : start + config.batch_nerfs]
                t_batch = time.perf_counter()
                objects = [_load(load_object, entries[i], config) for i in batch]
                tests = [_load_test_views(load_object, entries[i], config) for i in batch]
                scenes = [scene_from_object(o, config.eval_every, device, t) for o, t in zip(objects, tests, strict=True)]
                results = fit(
                    spec, init_obj.params, scenes, config, device=device, backend=backend,
                    seed=config.seed + batch[0],
                )
                records = [
                    NerfRecord(
                        object_id=o.object_id,
                        class_name=o.class_name,
                        split=o.split,
                        arch=spec,
                        init_fingerprint=init_obj.fingerprint,
                        params=r.params,
                        psnr=r.psnr,
                        fit_seconds=r.seconds,
                        source=str(o.path),
                        psnr_on=s.eval_on,
                    )
                    for o, r, s in zip(objects, results, scenes, strict=True)
                ]
                path = out / spec.name / f"shard-{batch[0]:06d}.h5"
                write_nerf_shard(
                    path,
                    records,
                    config={"fit": config.to_dict(), "backend": backend, "device": device},
                    inputs={"init": init_obj.fingerprint, "dataset": str(dataset)},
                )
                shards.append(path)
                arch_sum = summary[spec.name]
                arch_sum.fitted += len(records)
                arch_sum.psnrs.extend(r.psnr for r in records)
                for r in records:
                    arch_sum.psnr_on[r.psnr_on] = arch_sum.psnr_on.get(r.psnr_on, 0) + 1
                arch_sum.seconds += time.perf_counter() - t_batch
                if bar is not None:
                    bar.update(len(records))
                    bar.set_postfix_str(f"{spec.name} PSNR {arch_sum.mean_psnr:.2f} dB")
                log.info(
                    "%s: wrote %s (%d NeRFs, mean PSNR %.2f dB)",
                    spec.name, path, len(records), sum(r.psnr for r in records) / len(records),
                )
    finally:
        if bar is not None:
            bar.close()
    return FitSummary(out, summary, shards, time.perf_counter() - t0, device, backend, config.sampler)


__all__ = [
    "ArchSummary",
    "FitSummary",
    "completed_keys",
    "fit_dataset",
    "resolve_inits",
    "shard_from_env",
    "shard_selection",
]
