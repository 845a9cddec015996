"""Zero-shot classification of NeRFs (seed 002 §5.1, Table 1), and its rendering baseline.

**nerf2clip**: the class whose text embedding (prompt templates averaged: each prompt's
embedding L2-normalised, their mean normalised again) is nearest by cosine to
``nerf2clip(embedding)``. Nothing is rendered; the time per NeRF is that of the map and the
comparison (the embedding itself comes from ``nfkit embed``).

**render-then-CLIP** (the baseline): render k views of the NeRF (the dataset's cameras of its
object, evenly spaced frames; black background), CLIP each, average the image embeddings, take
the nearest text embedding. Timed per NeRF for every k (1, 9, 36 as in the seed), rendering
and CLIP included, each k rendered on its own.

**CLIP on ground-truth views** (a reference, not timed): the same with the dataset's own images
from the CLIP cache, when there is one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nfkit.clip.captions import DEFAULT_TEMPLATES, class_prompts
from nfkit.clip.maps import ClipMaps
from nfkit.embed.store import EmbeddingSet
from nfkit.errors import UserError
from nfkit.eval.metrics import accuracy
from nfkit.io.lock import locks_output
from nfkit.models.clip_maps import apply

log = logging.getLogger(__name__)

DEFAULT_BASELINE_VIEWS = (1, 9, 36)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def text_classifier(clip, classes: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> np.ndarray:
    """Class text embeddings, templates averaged. Shapes: C classes -> (C, D) float32, unit rows."""
    prompts = class_prompts(classes, templates)
    flat = [p for ps in prompts for p in ps]
    emb = _normalize(clip.encode_texts(flat)).reshape(len(classes), len(prompts[0]), -1)
    return _normalize(emb.mean(axis=1)).astype(np.float32)


def nearest_class(x: np.ndarray, text: np.ndarray) -> np.ndarray:
    """Index of the nearest text row by cosine. Shapes: (n, D), (C, D) -> (n,) int64."""
    return np.argmax(_normalize(np.asarray(x, np.float32)) @ text.T, axis=1).astype(np.int64)


@dataclass
class ZeroShotRow:
    method: str
    accuracy: float
    ms_per_nerf: float
    n: int
    note: str = ""


@dataclass
class ZeroShotResult:
    rows: list[ZeroShotRow]
    classes: list[str]
    templates: list[str]
    clip: dict
    split: str
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"rows": [r.__dict__ for r in self.rows], "classes": self.classes, "templates": self.templates,
                "split": self.split, **self.clip, **self.extra}


def nerf2clip_zero_shot(maps: ClipMaps, es: EmbeddingSet, text: np.ndarray, classes: Sequence[str],
                        control: bool = False, repeats: int = 3) -> tuple[ZeroShotRow, np.ndarray]:
    """Accuracy of nerf2clip zero-shot on ``es`` and the best-of-``repeats`` time per NeRF."""
    net = maps.net("nerf2clip", control)
    lookup = {c: i for i, c in enumerate(classes)}
    target = np.array([lookup.get(c, -1) for c in es.class_name], np.int64)
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        pred = nearest_class(apply(net, es.embedding).numpy(), text)
        best = min(best, time.perf_counter() - t0)
    name = "nerf2clip (shuffled control)" if control else "nerf2clip"
    return ZeroShotRow(name, accuracy(pred, target), 1e3 * best / max(1, len(es)), len(es), "batched, map + cosine"), pred


def gt_views_zero_shot(cache, es: EmbeddingSet, text: np.ndarray, classes: Sequence[str], ks: Sequence[int]) -> list[ZeroShotRow]:
    """CLIP of k ground-truth views (from the cache) per test object; not timed."""
    rows_of = cache.row_of()
    keys = sorted({str(k) for k in es.keys if ("", str(k)) in rows_of})
    if not keys:
        return []
    lookup = {c: i for i, c in enumerate(classes)}
    emb = cache.embedding[[rows_of[("", k)] for k in keys]]
    target = np.array([lookup.get(k.split("/", 1)[0], -1) for k in keys])
    out = []
    for k in ks:
        if k > emb.shape[1]:
            continue
        pick = np.unique(np.linspace(0, emb.shape[1] - 1, k).round().astype(int))
        pred = nearest_class(_normalize(emb[:, pick]).mean(1), text)
        out.append(ZeroShotRow(f"CLIP on {k} ground-truth view(s)", accuracy(pred, target), float("nan"), len(keys),
                               "reference: dataset images, not timed"))
    return out


def render_clip_zero_shot(records: Sequence, clip, text: np.ndarray, classes: Sequence[str], ks: Sequence[int],
                          resolution: int | None = None, n_samples: int = 96, grid_res: int = 64, device: str = "cpu",
                          progress: bool = False) -> list[ZeroShotRow]:
    """The rendering baseline on NeRF records (see the module), one row per k."""
    from nfkit.clip.backend import _bar
    from nfkit.clip.cache import _transforms
    from nfkit.data.multiview import load_cameras
    from nfkit.render.views import render_views

    lookup = {c: i for i, c in enumerate(classes)}
    preds = {k: [] for k in ks}
    secs = {k: 0.0 for k in ks}
    targets = []
    bar = _bar(len(records) * len(ks), progress, "render + CLIP baseline", "job")
    for rec in records:
        if not rec.source or not Path(rec.source).is_dir():
            raise UserError(f"{rec.arch.name} {rec.key}: its object folder {rec.source or '(none)'} is missing; "
                            "the baseline renders at the dataset's cameras")
        cams = load_cameras(_transforms(Path(rec.source)), resolution)
        targets.append(lookup.get(rec.class_name, -1))
        for k in ks:
            pick = np.unique(np.linspace(0, len(cams.c2w) - 1, min(k, len(cams.c2w))).round().astype(int))
            _sync(device)
            t0 = time.perf_counter()
            imgs = render_views(rec.arch, rec.params, cams.c2w[pick], cams.height, cams.width, cams.focal,
                                n_samples=n_samples, grid_res=grid_res, device=device, sin=rec.sin)
            emb = clip.encode_images(list(imgs), progress=False)
            preds[k].append(int(nearest_class(_normalize(emb).mean(0, keepdims=True), text)[0]))
            _sync(device)
            secs[k] += time.perf_counter() - t0
            bar.update(1)
    bar.close()
    n = len(records)
    return [ZeroShotRow(f"render {k} view(s) + CLIP", accuracy(np.array(preds[k]), np.array(targets)),
                        1e3 * secs[k] / max(1, n), n, f"{cams.width}x{cams.height} px, {n_samples} samples/ray" if n else "")
            for k in ks]


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def zero_shot_markdown(result: ZeroShotResult | dict) -> str:
    d = result.to_json() if isinstance(result, ZeroShotResult) else result
    lines = [f"Zero-shot classification ({d['split']} split, {len(d['classes'])} classes, chance "
             f"{100 / max(1, len(d['classes'])):.1f} %; prompts: {'; '.join(d['templates'])}; CLIP {d.get('clip_model')})", "",
             "| method | accuracy % | ms / NeRF | NeRFs | note |", "|---|---:|---:|---:|---|"]
    for r in d["rows"]:
        ms = "—" if r["ms_per_nerf"] is None or not np.isfinite(r["ms_per_nerf"]) else f"{r['ms_per_nerf']:.2f}"
        acc = "n/a" if not np.isfinite(r["accuracy"]) else f"{100 * r['accuracy']:.1f}"
        lines.append(f"| {r['method']} | {acc} | {ms} | {r['n']} | {r['note']} |")
    return "\n".join(lines) + "\n"


@locks_output()
def run_zero_shot(es: EmbeddingSet, maps: ClipMaps, clip, templates: Sequence[str] = DEFAULT_TEMPLATES,
                  split: str = "test", records: Sequence | None = None, baseline_views: Sequence[int] = DEFAULT_BASELINE_VIEWS,
                  cache=None, classes: Sequence[str] | None = None, resolution: int | None = None,
                  device: str = "cpu", progress: bool = False, out: str | Path | None = None) -> ZeroShotResult:
    """nerf2clip (and its control), CLIP on GT views and render-then-CLIP in one run.

    ``es``: the embeddings (``split`` is selected); ``records``: NeRF records of those rows for
    the rendering baseline (None: skipped); ``classes``: the label set (default: the classes of
    the embeddings). Writes ``zero-shot.json`` and ``zero-shot.md`` into ``out``.
    """
    maps.check_clip(clip.fingerprint, f"CLIP {clip.name} ({clip.pretrained or 'random weights'})")
    maps.check_embeddings(es)
    test = es if split == "all" else es.select(split=split)
    if not len(test):
        raise UserError(f"no embeddings of split {split!r} to classify")
    classes = sorted(set(classes or es.classes()))
    templates = list(templates) or list(DEFAULT_TEMPLATES)
    text = text_classifier(clip, classes, templates)
    row, _ = nerf2clip_zero_shot(maps, test, text, classes)
    rows = [row]
    if maps.control:
        rows.append(nerf2clip_zero_shot(maps, test, text, classes, control=True)[0])
    if cache is not None:
        rows += gt_views_zero_shot(cache, test, text, classes, baseline_views)
    if records:
        rows += render_clip_zero_shot(records, clip, text, classes, baseline_views, resolution, device=device, progress=progress)
    result = ZeroShotResult(rows, classes, templates, clip.describe(), split)
    if out is not None:
        from nfkit.tasks.classify import write_text

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "zero-shot.json", json.dumps(result.to_json(), indent=2, default=float))
        write_text(out / "zero-shot.md", zero_shot_markdown(result))
    return result


__all__ = [
    "DEFAULT_BASELINE_VIEWS",
    "text_classifier",
    "nearest_class",
    "ZeroShotRow",
    "ZeroShotResult",
    "nerf2clip_zero_shot",
    "gt_views_zero_shot",
    "render_clip_zero_shot",
    "zero_shot_markdown",
    "run_zero_shot",
]
