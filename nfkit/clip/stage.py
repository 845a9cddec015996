"""The ``map-clip`` stage: CLIP embeddings of the views (cached), nerf2clip and clip2nerf.

:func:`run_map_clip` loads the embeddings and the CLIP model, computes (or reuses) the CLIP
cache of the objects' views (``<out>/cache-<views>-<n>v-<clip fingerprint>.h5``), trains both
networks and the shuffled control (:mod:`nfkit.clip.maps`) and writes ``<out>/maps.h5`` and
``<out>/map-clip.json`` (the test cosines of both networks and of the control).

Where the views come from: ``--views gt`` reads the dataset's images (the dataset folder, or,
without one, the object folders recorded in the NeRF shards); ``--views rendered`` renders the
NeRF shards at the cameras of their object folders.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfkit.clip.cache import (
    ClipCache,
    cache_name,
    gt_views,
    read_clip_cache,
    rendered_views,
    write_clip_cache,
)
from nfkit.clip.maps import MapClipConfig, pair_views, save_maps, shuffled, train_pair
from nfkit.embed.store import EmbeddingSet, load_embeddings
from nfkit.errors import UserError
from nfkit.io.artifacts import ArtifactError, atomic_path
from nfkit.io.lock import output_folder

log = logging.getLogger(__name__)

MAPS_FILE = "maps.h5"


def select_archs(es: EmbeddingSet, archs: Sequence[str] | None) -> EmbeddingSet:
    if not archs:
        return es
    by_lower = {a.lower(): a for a in es.archs()}
    bad = [a for a in archs if a.lower() not in by_lower]
    if bad:
        raise UserError(f"--arch {', '.join(bad)}: no embeddings of it; expected one of {', '.join(by_lower.values())}")
    return es.select(arch=[by_lower[a.lower()] for a in archs])


def object_entries(es: EmbeddingSet, dataset: str | Path | None, nerfs) -> list:
    """Dataset objects (ObjectEntry) of the embeddings' keys: from the dataset folder, else from
    the object folders the NeRF shards record."""
    from nfkit.data.multiview import ObjectEntry, scan_dataset

    wanted = set(es.keys.astype(str))
    if dataset is not None:
        entries = [e for e in scan_dataset(Path(dataset)) if f"{e.class_name}/{e.object_id}" in wanted]
    elif nerfs is not None:
        from nfkit.nerf.store import iter_nerfs

        seen: dict[str, ObjectEntry] = {}
        for rec in iter_nerfs(nerfs, load_params=False):
            if rec.key in wanted and rec.key not in seen and rec.source and Path(rec.source).is_dir():
                seen[rec.key] = ObjectEntry(rec.object_id, rec.class_name, rec.split, Path(rec.source))
        entries = sorted(seen.values(), key=lambda e: (e.class_name, e.object_id))
    else:
        raise UserError("ground-truth views need the dataset folder (DATASET) or NeRF shards that record it")
    if not entries:
        raise UserError(f"none of the {len(wanted)} embedded objects is in the dataset {dataset or nerfs}")
    return entries


def build_cache(es: EmbeddingSet, clip, views: str, n_views: int, out: Path, dataset=None, nerfs=None,
                render_resolution: int | None = None, device: str = "cpu", progress: bool = False) -> ClipCache:
    """The CLIP cache of the embeddings' objects in ``out``: rows already there are reused, only
    the missing objects are embedded (and the file rewritten with all rows)."""
    path = out / cache_name(views, n_views, clip.fingerprint)
    old = None
    if path.is_file():
        try:
            old = read_clip_cache(path)
        except ArtifactError as exc:
            log.warning("%s; recomputing it", exc)
        if old is not None and (old.clip_fingerprint != clip.fingerprint or old.embedding.shape[1] != n_views):
            old = None
    have = set(old.row_of()) if old is not None else set()
    need = es.take([i for i, (a, k) in enumerate(zip(es.arch, es.keys, strict=True))
                    if ("" if views == "gt" else str(a), str(k)) not in have])
    if not len(need):
        log.info("reusing the CLIP cache %s", path)
        return old
    if views == "gt":
        new = gt_views(object_entries(need, dataset, nerfs), n_views, clip, progress)
    else:
        if nerfs is None:
            raise UserError("--views rendered needs the NeRF shards (--nerfs, default <workspace>/nerfs)")
        from nfkit.nerf.store import iter_nerfs

        wanted = {(str(a), str(k)) for a, k in zip(need.arch, need.keys, strict=True)}
        records = (r for r in iter_nerfs(nerfs) if (r.arch.name, r.key) in wanted)
        new = rendered_views(records, n_views, clip, render_resolution, device=device, progress=progress, total=len(wanted))
    cache = new if old is None else merge_caches(old, new)
    config = {"views": views, "n_views": n_views, "dataset": str(dataset or ""), "render_resolution": render_resolution}
    write_clip_cache(path, cache, config, {"clip": clip.fingerprint})
    cache.path = path
    return cache


def merge_caches(a: ClipCache, b: ClipCache) -> ClipCache:
    """Rows of ``a`` then the rows of ``b`` not in ``a`` (same CLIP and views)."""
    seen = set(a.row_of())
    extra = [i for i, key in enumerate(zip(b.meta["arch"].astype(str), b.keys.astype(str), strict=True)) if key not in seen]
    b = b.take(extra)
    return ClipCache(np.concatenate([a.embedding, b.embedding]), np.concatenate([a.view_index, b.view_index]),
                     {k: np.concatenate([a.meta[k], b.meta[k]]) for k in a.meta}, a.views, a.clip_model,
                     a.clip_pretrained, a.clip_fingerprint)


@dataclass
class MapClipSummary:
    maps: Path
    cache: Path
    n_pairs: int
    metrics: dict
    control: dict | None
    clip: dict

    def to_json(self) -> dict:
        return {"maps": str(self.maps), "cache": str(self.cache), "n_embeddings": self.n_pairs,
                "metrics": self.metrics, "control": self.control, **self.clip}


def run_map_clip(embeddings, out: str | Path, clip, config: MapClipConfig, dataset=None, nerfs=None,
                 archs: Sequence[str] | None = None, render_resolution: int | None = None,
                 device: str = "cpu", progress: bool = False, extra_config: dict | None = None) -> MapClipSummary:
    """See the module. ``clip`` is a loaded :class:`~nfkit.clip.backend.ClipModel`."""
    out = Path(out)
    with output_folder(out, "--out"):  # refused while another run writes there
        es = select_archs(load_embeddings(embeddings), archs)
        cache = build_cache(es, clip, config.views, config.n_views, out, dataset, nerfs, render_resolution, device, progress)
        pairs = pair_views(es, cache)
        trained = train_pair(pairs, config, device, progress)
        control = train_pair(shuffled(pairs, config.seed), config, device, progress, tag="control ") if config.control else None
        resolved = {**config.to_dict(), **(extra_config or {}), "archs": sorted(set(pairs.archs.tolist()))}
        maps = save_maps(out / MAPS_FILE, trained, control, clip.describe(), es.encoder_fingerprint, config.views,
                         resolved, {"embeddings_encoder": es.encoder_fingerprint, "clip": clip.fingerprint})
        summary = MapClipSummary(maps, cache.path or out, len(pairs.nerf), trained["metrics"],
                                 control["metrics"] if control else None, clip.describe())
        with atomic_path(out / "map-clip.json") as tmp:
            tmp.write_text(json.dumps(summary.to_json(), indent=2))
        return summary


def summary_markdown(s: MapClipSummary | dict) -> str:
    """Cosine of each network per split, next to the shuffled control."""
    d = s.to_json() if isinstance(s, MapClipSummary) else s
    lines = ["| split | n | nerf2clip cos | clip2nerf cos | control nerf2clip | control clip2nerf |", "|---|---:|---:|---:|---:|---:|"]
    for split, m in d["metrics"].items():
        c = (d.get("control") or {}).get(split, {})
        f = lambda v: "n/a" if v is None or not np.isfinite(v) else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {split} | {m['n']} | {f(m['nerf2clip_cosine'])} | {f(m['clip2nerf_cosine'])} | "
                     f"{f(c.get('nerf2clip_cosine'))} | {f(c.get('clip2nerf_cosine'))} |")
    return "\n".join(lines) + "\n"


__all__ = ["MAPS_FILE", "select_archs", "object_entries", "build_cache", "merge_caches", "MapClipSummary", "run_map_clip", "summary_markdown"]
