"""``retrieve --query-nerf``: the nearest gallery NeRFs of one NeRF artifact, and a picture.

The query NeRF (any architecture, also unseen ones) is embedded with the encoder
(``nfkit.encoder.embed``), searched in the gallery embeddings, and the query and its results
are rendered from one turntable camera (:func:`nfkit.render.views.render_views`) into a PNG
grid: the query first, then the results with class, architecture and distance.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfkit.embed.store import EmbeddingSet
from nfkit.errors import IncompatibleError, UserError
from nfkit.eval.search import ExactIndex, check_metric

log = logging.getLogger(__name__)


@dataclass
class Hit:
    rank: int
    arch: str
    key: str
    class_name: str
    split: str
    distance: float


def search_gallery(
    query: EmbeddingSet, gallery: EmbeddingSet, k: int = 5, metric: str = "cosine", device: str = "cpu"
) -> list[list[Hit]]:
    """The k nearest gallery rows of each query row; a gallery row of the same object and
    architecture as the query (the query itself) is left out."""
    if query.encoder_fingerprint != gallery.encoder_fingerprint:
        raise IncompatibleError(
            f"the query was embedded by encoder {query.encoder_fingerprint or '?'}, the gallery by "
            f"{gallery.encoder_fingerprint or '?'}; use the gallery's encoder"
        )
    if not len(gallery):
        raise UserError("the gallery is empty")
    g_id = {(a, k_): i for i, (a, k_) in enumerate(zip(gallery.arch, gallery.keys, strict=True))}
    exclude = np.array([g_id.get((a, k_), -1) for a, k_ in zip(query.arch, query.keys, strict=True)], np.int64)
    res = ExactIndex(gallery.embedding, check_metric(metric), device).search(query.embedding, k, exclude=exclude)
    out = []
    for row_i, row_d in zip(res.index, res.distance, strict=True):
        out.append([
            Hit(r + 1, str(gallery.arch[i]), str(gallery.keys[i]), str(gallery.class_name[i]), str(gallery.split[i]), float(d))
            for r, (i, d) in enumerate(zip(row_i, row_d, strict=True)) if i >= 0
        ])
    return out


class NerfLookup:
    """Find stored NeRFs by (architecture, ``class/object_id``) in NeRF shards, loading each
    shard's weights once."""

    def __init__(self, nerfs: str | Path | Sequence[str | Path]) -> None:
        from nfkit.nerf.store import find_shards, read_nerf_shard

        self._where: dict[tuple[str, str], tuple[Path, int]] = {}
        self._cache: dict[Path, list] = {}
        for shard in find_shards(nerfs):
            for rec in read_nerf_shard(shard, load_params=False):
                self._where.setdefault((rec.arch.name, rec.key), (shard, rec.index))

    def get(self, arch: str, key: str):
        from nfkit.nerf.store import read_nerf_shard

        hit = self._where.get((arch, key))
        if hit is None:
            return None
        shard, i = hit
        if shard not in self._cache:
            self._cache[shard] = read_nerf_shard(shard)
        return self._cache[shard][i]


def render_thumbnail(record, resolution: int = 96, elevation_deg: float = 30.0, distance: float = 3.4,
                     fov_x: float = 0.8, azimuth_view: int = 1, device: str = "cpu") -> np.ndarray:
    """One view of a NeRF on black from the turntable camera ``azimuth_view`` of 8.
    Shapes: -> (resolution, resolution, 3) float32."""
    from nfkit.render.rays import turntable_cameras
    from nfkit.render.views import render_views

    c2w = turntable_cameras(8, elevation_deg, distance)[azimuth_view : azimuth_view + 1]
    focal = 0.5 * resolution / math.tan(0.5 * fov_x)
    return render_views(record.arch, record.params, c2w, resolution, resolution, focal, n_samples=96,
                        grid_res=48, device=device, sin=getattr(record, "sin", "exact"))[0]


def retrieval_picture(query_record, hits: Sequence[Hit], lookup: NerfLookup | None, path: str | Path,
                      resolution: int = 96, device: str = "cpu", query_image: np.ndarray | None = None,
                      query_caption: str = "query") -> Path:
    """PNG grid: the query's render (or ``query_image`` (H, W, 3), e.g. a photo, with
    ``query_caption``), then each result's render (grey where the NeRF is not found)."""
    from nfkit.eval.plots import image_grid

    blank = np.full((resolution, resolution, 3), 0.3, np.float32)
    if query_image is not None:
        imgs, caps = [np.asarray(query_image, np.float32)], [query_caption]
    else:
        imgs = [render_thumbnail(query_record, resolution, device=device)]
        caps = [f"query\n{query_record.arch.name} {query_record.class_name}"]
    for h in hits:
        rec = lookup.get(h.arch, h.key) if lookup is not None else None
        imgs.append(render_thumbnail(rec, resolution, device=device) if rec is not None else blank)
        caps.append(f"#{h.rank} {h.class_name}\n{h.arch} d={h.distance:.3f}")
    return image_grid([imgs], [caps], path)


def query_nerf(
    path: str | Path,
    gallery: EmbeddingSet,
    encoder: str | Path,
    k: int = 5,
    metric: str = "cosine",
    row: int = 0,
    nerfs: str | Path | Sequence[str | Path] | None = None,
    picture: str | Path | None = None,
    resolution: int = 96,
    device: str = "cpu",
) -> tuple[str, list[Hit], Path | None]:
    """Embed the NeRF at ``path`` (row ``row`` of the shard), search ``gallery``, optionally
    render the picture (results looked up in ``nerfs``). Returns (query description, hits, PNG)."""
    from nfkit.nerf.store import read_nerf_shard
    from nfkit.tasks.classify import embed_records_with

    if k < 1:
        raise UserError(f"--top-k must be >= 1, got {k}")
    try:
        metric = check_metric(metric)
    except ValueError:
        raise UserError(f"--metric {metric!r}: expected auto, cosine or l2") from None
    if picture is not None and resolution < 1:
        raise UserError(f"--resolution must be >= 1, got {resolution}")
    records = read_nerf_shard(path)
    if not 0 <= row < len(records):
        raise UserError(f"--query-row {row}: {path} holds {len(records)} NeRF(s)")
    rec = records[row]
    q = embed_records_with([rec], encoder, device=device)
    hits = search_gallery(q, gallery, k, metric, device)[0]
    png = None
    if picture is not None:
        lookup = NerfLookup(nerfs) if nerfs is not None else None
        png = retrieval_picture(rec, hits, lookup, picture, resolution=resolution, device=device)
    return f"{rec.arch.name} {rec.key}", hits, png


__all__ = ["Hit", "search_gallery", "NerfLookup", "render_thumbnail", "retrieval_picture", "query_nerf"]
