"""Retrieval of NeRFs from images and text, in both modalities (seed 002 §5.2; seed 004).

- ``clip2nerf``: query = ``clip2nerf(CLIP(image))`` (several images: the mean of the mapped
  embeddings, the seed's multi-view query), gallery = the NeRF embeddings.
- ``nerf2clip`` (seed 004's reverse modality): gallery = ``nerf2clip(NeRF embeddings)``, query =
  the raw CLIP embedding (several images: their mean).

Text queries are the CLIP text embedding (several prompts: their mean), mapped the same way.
Search is exact cosine k-NN (:class:`nfkit.eval.search.ExactIndex`).

:func:`evaluate_views` measures image -> NeRF *class* recall@k (hit = a result of the query's
class; the query's own object is removed from the gallery in every architecture, as the
reference removes the query's NeRF) for single-view queries and for multi-view queries (all of
an object's views), for the maps and for the shuffled control. :func:`evaluate_text` does the
same with one prompt query per class.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfkit.clip.maps import ClipMaps
from nfkit.embed.store import EmbeddingSet
from nfkit.errors import UserError
from nfkit.eval.metrics import (
    hit_rate_at_k,
    map_at_k,
    precision_at_k,
    queries_without_match,
    relevance,
    retrieval_scores,
)
from nfkit.eval.search import ExactIndex
from nfkit.models.clip_maps import apply

log = logging.getLogger(__name__)

MODALITIES = ("clip2nerf", "nerf2clip")


def check_modality(m: str) -> str:
    m = str(m).strip().lower()
    if m not in MODALITIES:
        raise UserError(f"--modality {m!r}: expected {', '.join(MODALITIES)} or both")
    return m


def gallery_vectors(maps: ClipMaps, es: EmbeddingSet, modality: str, control: bool = False) -> np.ndarray:
    """Gallery in the search space. Shapes: (n, E) -> (n, E) for clip2nerf, (n, D) for nerf2clip."""
    if modality == "clip2nerf":
        return es.embedding.astype(np.float32)
    return apply(maps.net("nerf2clip", control), es.embedding).numpy()


def query_vectors(maps: ClipMaps, clip_emb: np.ndarray, modality: str, control: bool = False) -> np.ndarray:
    """One query per row of CLIP embeddings of several views, in the search space.

    Shapes: (nq, V, D) -> (nq, E) (clip2nerf: mean of the V mapped views) or (nq, D) (nerf2clip:
    mean of the V raw embeddings). (nq, D) is treated as V = 1.
    """
    x = np.asarray(clip_emb, np.float32)
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3 or x.shape[2] != maps.clip_dim:
        raise UserError(f"CLIP embeddings of width {x.shape[-1]} do not fit maps of a {maps.clip_dim}-d CLIP")
    if modality == "nerf2clip":
        return x.mean(axis=1)
    nq, v, d = x.shape
    return apply(maps.net("clip2nerf", control), x.reshape(-1, d)).numpy().reshape(nq, v, -1).mean(axis=1)


@dataclass
class ClipHit:
    rank: int
    arch: str
    key: str
    class_name: str
    split: str
    distance: float


def search(maps: ClipMaps, gallery: EmbeddingSet, clip_emb: np.ndarray, modality: str, k: int = 5,
           device: str = "cpu") -> list[ClipHit]:
    """The k nearest gallery NeRFs of one (multi-view) query. Shapes: clip_emb (V, D)."""
    maps.check_embeddings(gallery, "the gallery embeddings")
    if not len(gallery):
        raise UserError("the gallery is empty")
    q = query_vectors(maps, np.asarray(clip_emb)[None], modality)
    res = ExactIndex(gallery_vectors(maps, gallery, modality), "cosine", device).search(q, k)
    return [ClipHit(r + 1, str(gallery.arch[i]), str(gallery.keys[i]), str(gallery.class_name[i]), str(gallery.split[i]), float(d))
            for r, (i, d) in enumerate(zip(res.index[0], res.distance[0], strict=True)) if i >= 0]


def _ranked_without_own(index: ExactIndex, q: np.ndarray, q_keys: np.ndarray, g_keys: np.ndarray, k: int) -> np.ndarray:
    """Rankings of k gallery rows per query, the rows of the query's own object dropped."""
    per_key = max((int((g_keys == key).sum()) for key in set(q_keys.tolist())), default=0)
    res = index.search(q, min(len(g_keys), k + per_key))
    out = np.full((len(q), k), -1, np.int64)
    for i, row in enumerate(res.index):
        kept = [j for j in row if j >= 0 and g_keys[j] != q_keys[i]][:k]
        out[i, : len(kept)] = kept
    return out


def _class_scores(index, q, q_keys, q_classes, gallery: EmbeddingSet, ks) -> dict[str, float]:
    """retrieval_scores' dict for rankings without the query's own object: R (relevant items)
    counts the gallery rows of the query's class that are not of its object; queries with
    R = 0 count as misses (and as ``no_match``)."""
    g_keys, g_cls = gallery.keys.astype(str), gallery.class_name.astype(str)
    ranked = _ranked_without_own(index, q, q_keys, g_keys, max(ks))
    rel = relevance(ranked, np.asarray(q_classes), g_cls)
    n_rel = np.array([int(((g_cls == c) & (g_keys != k)).sum()) for c, k in zip(q_classes, q_keys, strict=True)])
    n_ret = (ranked >= 0).sum(axis=1)
    out = {"n_queries": float(len(rel)), "no_match": float(queries_without_match(n_rel))}
    for k in ks:
        out[f"hit@{k}"] = hit_rate_at_k(rel, k)
        out[f"precision@{k}"] = precision_at_k(rel, k, n_ret)
        out[f"map@{k}"] = map_at_k(rel, k, n_rel)
    return out


def evaluate_views(maps: ClipMaps, gallery: EmbeddingSet, cache, modality: str, ks: Sequence[int] = (1, 5, 10),
                   device: str = "cpu", query_keys=None) -> dict[str, dict[str, float]]:
    """Image -> NeRF class recall (see the module). Queries: the cache rows of the objects
    ``query_keys`` (``class/object_id``; default: the gallery's objects); for rendered caches
    every architecture's renders are queries of their own.

    Returns {"single-view" | "multi-view" | "... (shuffled control)": retrieval_scores}.
    """
    maps.check_clip(cache.clip_fingerprint, f"the CLIP cache {cache.path or ''}".rstrip())
    maps.check_embeddings(gallery, "the gallery embeddings")
    g_keys = set(gallery.keys.astype(str)) if query_keys is None else {str(k) for k in query_keys}
    g_archs = set(gallery.arch.astype(str)) | {""}
    rows = np.array([i for i, (k, a) in enumerate(zip(cache.keys, cache.meta["arch"], strict=True))
                     if str(k) in g_keys and str(a) in g_archs], np.int64)
    if not len(rows):
        raise UserError("no query views of the gallery's objects in the CLIP cache")
    sub = cache.take(rows)
    keys, classes = sub.keys.astype(str), sub.meta["class_name"].astype(str)
    v = sub.embedding.shape[1]
    out = {}
    for control in ([False, True] if maps.control else [False]):
        tag = " (shuffled control)" if control else ""
        index = ExactIndex(gallery_vectors(maps, gallery, modality, control), "cosine", device)
        single = query_vectors(maps, sub.embedding.reshape(-1, 1, sub.dim), modality, control)
        out[f"single-view{tag}"] = _class_scores(index, single, np.repeat(keys, v), np.repeat(classes, v), gallery, ks)
        multi = query_vectors(maps, sub.embedding, modality, control)
        out[f"multi-view ({v}){tag}"] = _class_scores(index, multi, keys, classes, gallery, ks)
    return out


def evaluate_text(maps: ClipMaps, gallery: EmbeddingSet, clip, modality: str, templates: Sequence[str],
                  ks: Sequence[int] = (1, 5, 10), device: str = "cpu") -> dict[str, dict[str, float]]:
    """Text -> NeRF class retrieval: one query per class (its prompts' mean text embedding),
    relevant = the gallery NeRFs of that class. Hit rate, precision and mAP at each k."""
    from nfkit.clip.captions import class_prompts

    maps.check_clip(clip.fingerprint, f"CLIP {clip.name}")
    classes = gallery.classes()
    prompts = class_prompts(classes, templates)
    text = clip.encode_texts([p for ps in prompts for p in ps]).reshape(len(classes), len(prompts[0]), -1)
    out = {}
    for control in ([False, True] if maps.control else [False]):
        index = ExactIndex(gallery_vectors(maps, gallery, modality, control), "cosine", device)
        q = query_vectors(maps, text, modality, control)
        res = index.search(q, max(ks))
        out["class prompts" + (" (shuffled control)" if control else "")] = retrieval_scores(
            res.index, np.array(classes), gallery.class_name.astype(str), ks)
    return out


def clip_retrieval_markdown(results: dict[str, dict[str, dict[str, dict[str, float]]]], ks: Sequence[int]) -> str:
    """results[what][modality][query kind] = scores -> one table per ``what``."""
    lines = []
    for what, by_mod in results.items():
        lines += [f"### {what}: class recall@k (%)", "",
                  "| modality | queries | " + " | ".join(f"R@{k}" for k in ks) + " | " + " | ".join(f"P@{k}" for k in ks)
                  + " | n | no match |",
                  "|---|---|" + "---:|" * (2 * len(ks) + 2)]
        for mod, rows in by_mod.items():
            for name, s in rows.items():
                cells = [f"{100 * s[f'hit@{k}']:.1f}" for k in ks] + [f"{100 * s[f'precision@{k}']:.1f}" for k in ks]
                lines.append(f"| {mod} | {name} | " + " | ".join(cells) + f" | {int(s['n_queries'])} | {int(s['no_match'])} |")
        lines.append("")
    return "\n".join(lines)


def text_card(text: str, size: int = 96) -> np.ndarray:
    """A grey square with ``text`` on it, the first cell of a text query's picture. -> (size, size, 3)."""
    import textwrap

    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (40, 40, 40))
    ImageDraw.Draw(img).multiline_text((4, 4), "\n".join(textwrap.wrap(text, 14)[:6]), fill=(235, 235, 235))
    return np.asarray(img, np.float32) / 255.0


@dataclass
class ClipQuery:
    """One query in CLIP space: photos (one multi-view query) or a text.

    Shapes: ``embedding`` (V, D) raw CLIP embeddings (V photos, or 1 text); ``image``
    (H, W, 3) the first photo, or a card with the text (the first cell of a picture).
    ``what`` describes the query for messages; ``name`` is a file-name stem
    (``<photo stem>`` or ``text-<slug>``); ``kind`` is ``image`` or ``text``.
    """

    kind: str
    embedding: np.ndarray
    what: str
    name: str
    image: np.ndarray
    caption: str
    photos: tuple[str, ...] = ()
    text: str = ""


def slug(text: str, limit: int = 40) -> str:
    """``text`` as a file-name stem: runs of other characters than letters and digits -> ``-``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:limit] or "query"


def embed_query(clip, photos: Sequence[str | Path] | None = None, text: str | None = None,
                card_size: int = 96) -> ClipQuery:
    """The CLIP embeddings of photos (any PNG/JPEG, :func:`nfkit.clip.images.load_photo`) or of
    a text, with what a picture of the query shows. A missing or unreadable photo, an empty text,
    both or neither given: one-line :class:`~nfkit.errors.UserError`."""
    from nfkit.clip.images import load_photo

    if photos and text is not None:
        raise UserError("give photos or a text query, not both")
    if photos:
        images = [load_photo(p) for p in photos]
        first = Path(photos[0])
        more = f" +{len(photos) - 1}" if len(photos) > 1 else ""
        return ClipQuery("image", clip.encode_images(images), ", ".join(str(p) for p in photos), first.stem,
                         images[0], "query\n" + first.name[:18] + more, photos=tuple(str(p) for p in photos))
    if text is None:
        raise UserError("no query: give photos or a text")
    if not text.strip():
        raise UserError("the text query is empty")
    return ClipQuery("text", clip.encode_texts([text]), repr(text), "text-" + slug(text), text_card(text, card_size),
                     "text query", text=text)


def query_picture(query_image: np.ndarray, caption: str, hits: Sequence[ClipHit], nerfs, path: str | Path,
                  resolution: int = 96, device: str = "cpu") -> Path:
    """PNG grid: the query (image or text card), then a render of each result."""
    from nfkit.tasks.query import NerfLookup, retrieval_picture

    lookup = NerfLookup(nerfs) if nerfs is not None else None
    return retrieval_picture(None, hits, lookup, path, resolution=resolution, device=device,
                             query_image=query_image, query_caption=caption)


__all__ = [
    "MODALITIES",
    "check_modality",
    "gallery_vectors",
    "query_vectors",
    "ClipHit",
    "search",
    "evaluate_views",
    "evaluate_text",
    "clip_retrieval_markdown",
    "text_card",
    "ClipQuery",
    "slug",
    "embed_query",
    "query_picture",
]
