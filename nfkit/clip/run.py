"""What ``classify --zero-shot`` and ``retrieve --query / --text / --clip-eval`` run: each loads
the maps, the CLIP they were trained with and the embeddings, checks that they fit together,
and calls one library function. Returns results and Markdown; prints nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from nfkit.clip.captions import DEFAULT_TEMPLATES
from nfkit.clip.maps import clip_of_maps, load_maps
from nfkit.embed.store import load_embeddings
from nfkit.errors import UserError
from nfkit.io.lock import locks_output


def _gallery(embeddings, maps, split: str, archs: Sequence[str] | None):
    from nfkit.clip.stage import select_archs

    es = load_embeddings(embeddings)
    maps.check_embeddings(es)
    es = es if split == "all" else es.select(split=split)
    if not len(es):
        raise UserError(f"no embeddings of split {split!r}")
    return select_archs(es, archs)


def _gt_cache(folder: Path, fingerprint: str):
    """The largest ground-truth CLIP cache of these CLIP weights in ``folder`` (or None)."""
    from nfkit.clip.cache import read_clip_cache

    found = sorted(folder.glob(f"cache-gt-*v-{fingerprint}.h5"))
    caches = [read_clip_cache(p) for p in found]
    return max(caches, key=lambda c: c.embedding.shape[1]) if caches else None


def zero_shot_cli(embeddings, maps_path, templates, clip_model, clip_pretrained, baseline_views, baseline_limit,
                  render_resolution, split, nerfs, out, device, progress):
    from nfkit.clip.zero_shot import DEFAULT_BASELINE_VIEWS, run_zero_shot, zero_shot_markdown

    maps = load_maps(maps_path, device)
    clip = clip_of_maps(maps, clip_model, clip_pretrained, device)
    es = load_embeddings(embeddings)
    ks = tuple(k for k in (baseline_views or DEFAULT_BASELINE_VIEWS) if k > 0)
    if any(k < 0 for k in baseline_views or ()):
        raise UserError("--baseline-views must be >= 1 (0 = no baseline)")
    records = None
    test = es if split == "all" else es.select(split=split)
    if ks and nerfs is not None:
        from nfkit.nerf.store import iter_nerfs

        wanted = {(str(a), str(k)) for a, k in zip(test.arch, test.keys, strict=True)}
        records = [r for r in iter_nerfs(nerfs) if (r.arch.name, r.key) in wanted]
        if baseline_limit is not None:
            if baseline_limit < 1:
                raise UserError(f"--baseline-limit must be >= 1, got {baseline_limit}")
            step = max(1, len(records) // baseline_limit)
            records = records[::step][:baseline_limit]
    cache = _gt_cache(Path(maps_path).parent, maps.clip_fingerprint)
    res = run_zero_shot(es, maps, clip, templates or DEFAULT_TEMPLATES, split, records, ks or DEFAULT_BASELINE_VIEWS,
                        cache, resolution=render_resolution, device=device, progress=progress, out=out)
    return res, zero_shot_markdown(res)


def modalities(modality: str | None, default: str) -> list[str]:
    from nfkit.clip.search import check_modality

    m = (modality or default).strip().lower()
    return ["clip2nerf", "nerf2clip"] if m == "both" else [check_modality(m)]


def query_cli(embeddings, maps_path, photos: Sequence[Path] | None, text: str | None, modality, clip_model,
              clip_pretrained, split, archs, k, nerfs, picture_dir: Path | None, resolution, device):
    """Search the gallery with photos (one multi-view query) or a text. Returns
    (description, {modality: hits}, {modality: png or None})."""
    from nfkit.clip.search import embed_query, query_picture, search

    if k < 1:
        raise UserError(f"--top-k must be >= 1, got {k}")
    if photos and text is not None:
        raise UserError("give --query images or --text, not both")
    if not photos and text is not None and not text.strip():
        raise UserError("--text is empty")
    maps = load_maps(maps_path, device)
    gallery = _gallery(embeddings, maps, split, archs)
    clip = clip_of_maps(maps, clip_model, clip_pretrained, device)
    q = embed_query(clip, photos or None, text, card_size=max(resolution, 96))
    hits, pngs = {}, {}
    for mod in modalities(modality, "clip2nerf"):
        hits[mod] = search(maps, gallery, q.embedding, mod, k, device)
        pngs[mod] = None
        if picture_dir is not None:
            pngs[mod] = query_picture(q.image, q.caption, hits[mod], nerfs, Path(picture_dir) / f"query-{q.name}-{mod}.png",
                                      resolution=resolution, device=device)
    return q.what, hits, pngs


@locks_output()
def clip_eval_cli(embeddings, maps_path, query_views: str, modality, clip_model, clip_pretrained, templates, split,
                  archs, ks, nerfs, dataset, out: Path, render_resolution, device, progress):
    """Image -> NeRF and text -> NeRF class recall in each modality, with the shuffled control.
    Queries are the views of the test-split objects (never seen by the maps); the gallery is
    the embeddings of ``split`` (``all`` helps where the test split holds one object per
    class: the query's own object is removed, so it needs another of its class). Writes ``clip-retrieval.json`` / ``.md`` into ``out``. Returns (results, markdown)."""
    from nfkit.clip.search import clip_retrieval_markdown, evaluate_text, evaluate_views
    from nfkit.clip.stage import build_cache
    from nfkit.tasks.classify import write_text

    maps = load_maps(maps_path, device)
    gallery = _gallery(embeddings, maps, split, archs)
    queries = _gallery(embeddings, maps, "test", archs)
    clip = clip_of_maps(maps, clip_model, clip_pretrained, device)
    n_views = int(maps.config.get("n_views", 36))
    cache = build_cache(queries, clip, query_views, n_views, Path(maps_path).parent, dataset, nerfs,
                        render_resolution, device, progress)
    q_keys = sorted(set(queries.keys.astype(str)))
    mods = modalities(modality, "both")
    results = {
        f"image -> NeRF ({query_views} query views of the test objects)":
            {m: evaluate_views(maps, gallery, cache, m, ks, device, q_keys) for m in mods},
        "text -> NeRF": {m: evaluate_text(maps, gallery, clip, m, templates or DEFAULT_TEMPLATES, ks, device) for m in mods},
    }
    md = (f"CLIP {clip.name} ({clip.pretrained or 'random weights'}); gallery: {len(gallery)} {split} NeRF embeddings "
          f"({', '.join(gallery.archs())}); queries: views of {len(q_keys)} test objects; hit = a result of the query's "
          "class, the query's own object removed (no match: queries without another object of their class).\n\n"
          + clip_retrieval_markdown(results, ks))
    out.mkdir(parents=True, exist_ok=True)
    clean = json.loads(json.dumps(results, default=float).replace("NaN", "null"))
    write_text(out / "clip-retrieval.json", json.dumps({"results": clean, "ks": list(ks), **clip.describe()}, indent=2))
    write_text(out / "clip-retrieval.md", md)
    return results, md


__all__ = ["zero_shot_cli", "query_cli", "clip_eval_cli", "modalities"]
