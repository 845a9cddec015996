"""The CLIP embedding cache: CLIP image embeddings of each object's views, computed once.

Layout (kind ``clip-cache``, schema v1; ``data_specs/clip-cache-v1.md``)::

    /                  root attrs: nfkit_* header, count, n_views, dim, views ("gt" | "rendered"),
                                   clip_model, clip_pretrained, clip_fingerprint, render_resolution
    /embedding         float32 (n, n_views, dim)   raw CLIP ``encode_image`` outputs
    /view_index        int64 (n, n_views)          frame index in the object's transforms file
    /meta/<key>        str (n,) object_id, class_name, split, arch ("" for ground-truth views),
                                caption (from meta.json; see nfkit.clip.captions)

Rows are objects (``--views gt``: one per ``class/object_id``, the dataset's views composited on
black) or NeRFs (``--views rendered``: one per architecture and object, views rendered from the
NeRF at the dataset's cameras on black, as the clip2nerf reference does). Which views: ``n_views``
evenly spaced frames of the transforms file (all 36 in the reference).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from nfkit.errors import IncompatibleError, UserError
from nfkit.io.artifacts import (
    ArtifactError,
    open_artifact,
    read_checked,
    register_reader,
    write_artifact,
)

log = logging.getLogger(__name__)

CLIP_CACHE = "clip-cache"
CLIP_CACHE_VERSION = 1
VIEWS = ("gt", "rendered")
_STR = h5py.string_dtype("utf-8")
_META = ("object_id", "class_name", "split", "arch", "caption")


@dataclass
class ClipCache:
    """CLIP embeddings of views. Shapes: ``embedding`` (n, V, D); ``view_index`` (n, V);
    each ``meta`` entry (n,) str."""

    embedding: np.ndarray
    view_index: np.ndarray
    meta: dict[str, np.ndarray]
    views: str
    clip_model: str
    clip_pretrained: str
    clip_fingerprint: str
    path: Path | None = None

    def __len__(self) -> int:
        return int(self.embedding.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embedding.shape[2])

    @property
    def keys(self) -> np.ndarray:
        """``class_name/object_id`` per row (as :attr:`EmbeddingSet.keys`)."""
        return np.array([f"{c}/{o}" for c, o in zip(self.meta["class_name"], self.meta["object_id"], strict=True)], dtype=object)

    def row_of(self) -> dict[tuple[str, str], int]:
        """(arch, key) -> row; ground-truth rows have arch ``""``."""
        return {(str(a), str(k)): i for i, (a, k) in enumerate(zip(self.meta["arch"], self.keys, strict=True))}

    def take(self, rows) -> ClipCache:
        rows = np.asarray(rows, np.int64)
        return ClipCache(self.embedding[rows], self.view_index[rows], {k: v[rows] for k, v in self.meta.items()},
                         self.views, self.clip_model, self.clip_pretrained, self.clip_fingerprint, self.path)


def check_same_clip(a_fp: str, b_fp: str, a_what: str, b_what: str) -> None:
    """IncompatibleError unless both were computed by the same CLIP weights."""
    if a_fp != b_fp:
        raise IncompatibleError(
            f"{a_what} comes from CLIP weights {a_fp or '?'}, {b_what} from {b_fp or '?'}; "
            "use the same --clip-model and --clip-pretrained for both"
        )


def write_clip_cache(path: str | Path, cache: ClipCache, config: dict | None = None,
                     inputs: dict[str, str] | None = None) -> Path:
    emb = np.asarray(cache.embedding, np.float32)
    if emb.ndim != 3 or not len(emb):
        raise ValueError(f"CLIP cache embeddings must be a non-empty (n, V, D) array, got {emb.shape}")
    if not np.isfinite(emb).all():
        raise ArtifactError(f"{path}: refusing to write non-finite CLIP embeddings")
    with write_artifact(path, CLIP_CACHE, CLIP_CACHE_VERSION, config, inputs) as f:
        f.create_dataset("embedding", data=emb)
        f.create_dataset("view_index", data=np.asarray(cache.view_index, np.int64))
        g = f.create_group("meta")
        for k in _META:
            g.create_dataset(k, data=[str(v) for v in cache.meta[k]], dtype=_STR)
        f.attrs.update(count=len(emb), n_views=emb.shape[1], dim=emb.shape[2], views=cache.views,
                       clip_model=cache.clip_model, clip_pretrained=cache.clip_pretrained,
                       clip_fingerprint=cache.clip_fingerprint)
    return Path(path)


def read_clip_cache(path: str | Path) -> ClipCache:
    path = Path(path)
    with open_artifact(path, CLIP_CACHE) as f:
        try:
            emb = read_checked(f["embedding"], path).astype(np.float32)
            idx = read_checked(f["view_index"], path).astype(np.int64)
            meta = {k: np.array([v.decode() if isinstance(v, bytes) else str(v) for v in read_checked(f["meta"][k], path)], dtype=object)
                    for k in _META}
            a = f.attrs
            out = ClipCache(emb, idx, meta, str(a["views"]), str(a["clip_model"]), str(a["clip_pretrained"]),
                            str(a["clip_fingerprint"]), path)
        except KeyError as exc:
            raise ArtifactError(f"{path}: malformed CLIP cache (missing {exc})") from None
    if emb.ndim != 3 or idx.shape != emb.shape[:2] or any(len(v) != len(emb) for v in meta.values()):
        raise ArtifactError(f"{path}: CLIP cache arrays do not agree in shape")
    return out


register_reader(CLIP_CACHE, CLIP_CACHE_VERSION, read_clip_cache)


def cache_name(views: str, n_views: int, clip_fingerprint: str) -> str:
    """File name of a cache in the clip folder: one per (views, n_views, CLIP weights)."""
    return f"cache-{views}-{n_views}v-{clip_fingerprint}.h5"


def _view_rows(n_frames: int, n_views: int) -> np.ndarray:
    if n_frames < n_views:
        raise UserError(f"--n-views {n_views}: an object has only {n_frames} views")
    return np.unique(np.linspace(0, n_frames - 1, n_views).round().astype(np.int64))


def gt_views(entries: Sequence, n_views: int, clip, progress: bool = False) -> ClipCache:
    """CLIP embeddings of the ground-truth views (composited on black) of dataset objects
    (:class:`nfkit.data.multiview.ObjectEntry`)."""
    from nfkit.clip.captions import object_caption
    from nfkit.data.multiview import load_object

    embs, idxs, meta = [], [], {k: [] for k in _META}
    bar = _object_bar(len(entries), progress, "CLIP of ground-truth views")
    for e in entries:
        frames = len(json.loads(_transforms(e.path).read_text())["frames"])
        rows = _view_rows(frames, n_views)
        obj = load_object(e, max_views=n_views)
        embs.append(clip.encode_images(list(obj.composite()), progress=False))
        idxs.append(rows)
        for k, v in zip(_META, (e.object_id, e.class_name, e.split, "", object_caption(e.class_name, e.path)), strict=True):
            meta[k].append(v)
        bar.update(1)
    bar.close()
    return _assemble(embs, idxs, meta, "gt", clip)


def rendered_views(records: Iterable, n_views: int, clip, resolution: int | None = None, n_samples: int = 96,
                   grid_res: int = 64, device: str = "cpu", progress: bool = False, total: int | None = None) -> ClipCache:
    """CLIP embeddings of views rendered from NeRF records at the cameras of their source object
    (``record.source``, the object folder they were fitted on), on black."""
    from nfkit.clip.captions import object_caption
    from nfkit.data.multiview import load_cameras
    from nfkit.render.views import render_views

    embs, idxs, meta = [], [], {k: [] for k in _META}
    bar = _object_bar(total, progress, "render + CLIP")
    for rec in records:
        if not rec.source or not Path(rec.source).is_dir():
            raise UserError(f"{rec.arch.name} {rec.key}: its source object folder {rec.source or '(none)'} is not "
                            "available, so its views cannot be rendered at the dataset's cameras")
        cams = load_cameras(_transforms(Path(rec.source)), resolution)
        rows = _view_rows(len(cams.c2w), n_views)
        imgs = render_views(rec.arch, rec.params, cams.c2w[rows], cams.height, cams.width, cams.focal,
                            n_samples=n_samples, grid_res=grid_res, device=device, sin=rec.sin)
        embs.append(clip.encode_images(list(imgs), progress=False))
        idxs.append(rows)
        for k, v in zip(_META, (rec.object_id, rec.class_name, rec.split, rec.arch.name,
                                object_caption(rec.class_name, rec.source)), strict=True):
            meta[k].append(v)
        bar.update(1)
    bar.close()
    if not embs:
        raise UserError("no NeRFs to render")
    return _assemble(embs, idxs, meta, "rendered", clip)


def _transforms(folder: Path) -> Path:
    from nfkit.data.multiview import _transforms_file

    return _transforms_file(Path(folder), "train")


def _assemble(embs, idxs, meta, views, clip) -> ClipCache:
    if not embs:
        raise UserError("no objects to embed with CLIP")
    return ClipCache(np.stack(embs).astype(np.float32), np.stack(idxs), {k: np.array(v, dtype=object) for k, v in meta.items()},
                     views, clip.name, clip.pretrained, clip.fingerprint)


def _object_bar(total, progress, desc):
    from nfkit.clip.backend import _bar

    return _bar(total or 0, progress, desc, "obj")


__all__ = [
    "CLIP_CACHE",
    "CLIP_CACHE_VERSION",
    "VIEWS",
    "ClipCache",
    "cache_name",
    "check_same_clip",
    "gt_views",
    "read_clip_cache",
    "rendered_views",
    "write_clip_cache",
]
