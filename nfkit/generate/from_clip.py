"""``generate from-image`` / ``generate from-text``: a new NeRF from photos or a text (seed 002; SPEC §8).

The query is embedded by the CLIP the maps were trained with (:func:`nfkit.clip.search.embed_query`,
the query of ``retrieve --query / --text``): each photo's CLIP image embedding goes through
clip2nerf and several photos are one multi-view query, the mean of their mapped embeddings
(SPEC §7); a text is its CLIP text embedding through clip2nerf. The NeRF embedding is decoded
by the encoder's implicit decoder and rendered on the turntable of ``generate gan``
(:func:`nfkit.generate.render.render_sample`); with ``to_nerf`` it is also fitted as a real
NeRF of that architecture from its shared init (:func:`nfkit.generate.stage.fit_generated`).

Outputs in ``out/`` (default ``<workspace>/generate/from-image/<photo stem>`` or
``<workspace>/generate/from-text/text-<slug>``)::

    generated.h5              embedding-shard of the one generated row (split "generated";
                              config "query" says what was asked; data_specs/generated-embeddings.md)
    <name>.png                the decoder's views in a row
    <name>.gif                their turntable, one frame per view
    nerfs/<arch>/generated.h5 with ``to_nerf``: the embedding fitted as a NeRF of ``arch``
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfkit.clip.search import ClipQuery
from nfkit.errors import UserError
from nfkit.io.artifacts import fingerprint_path, fingerprint_paths
from nfkit.io.lock import locks_output

#: the class recorded for a generated row unless one is given
DEFAULT_CLASS = "query"


@dataclass
class FromClipSummary:
    """What a from-image / from-text run wrote. ``embedding`` (E,) is the generated row."""

    out: Path
    query: ClipQuery
    embedding: np.ndarray
    generated: Path
    png: Path | None = None
    gif: Path | None = None
    nerfs: Path | None = None
    nerf_psnr: float = float("nan")


def query_config(q: ClipQuery, clip, maps) -> dict:
    """The generated shard's ``query`` config: what was asked, of which CLIP, through which maps."""
    cfg: dict = {"kind": q.kind, "views": int(len(q.embedding)), **clip.describe(), "maps": str(maps.path or "")}
    if q.kind == "image":
        cfg["photos"] = list(q.photos)
    else:
        cfg["text"] = q.text
    return cfg


def default_out(photos: Sequence[str | Path] | None, text: str | None) -> Path:
    """``<workspace>/generate/from-image/<stem of the first photo>[+N]`` or
    ``<workspace>/generate/from-text/text-<slug>``."""
    from nfkit.clip.search import slug
    from nfkit.workspace import stage_dir

    if photos:
        name = slug(Path(photos[0]).stem) + (f"+{len(photos) - 1}" if len(photos) > 1 else "")
        return stage_dir("generate") / "from-image" / name
    return stage_dir("generate") / "from-text" / ("text-" + slug(text or ""))


@locks_output()
def run_from_clip(
    maps_path: str | Path,
    encoder: str | Path,
    out: str | Path,
    photos: Sequence[str | Path] | None = None,
    text: str | None = None,
    class_name: str = DEFAULT_CLASS,
    clip_model: str | None = None,
    clip_pretrained: str | None = None,
    view_settings=None,
    render: bool = True,
    to_nerf: str | None = None,
    init: str | Path | None = None,
    nerfs_dir: str | Path | None = None,
    fit_config=None,
    device: str = "cpu",
    progress: bool = False,
) -> FromClipSummary:
    """Photos (one multi-view query) or a text -> CLIP -> clip2nerf -> a NeRF embedding of the
    maps' encoder, written as a one-row generated embedding shard; rendered through the decoder
    of ``encoder`` (PNG + GIF) unless ``render`` is false, and with ``to_nerf`` fitted as a NeRF
    of that architecture. The maps, the CLIP and the encoder are checked to fit together."""
    from nfkit.clip.maps import clip_of_maps, load_maps
    from nfkit.clip.search import embed_query, query_vectors, slug
    from nfkit.generate.render import ViewSettings, render_sample
    from nfkit.generate.stage import (
        fit_generated,
        generated_set,
        load_decoder,
        to_nerf_init,
        write_generated,
    )

    if not photos and text is None:
        raise UserError("no query: give photos or a text")
    if text is not None and not photos and not text.strip():
        raise UserError("the text query is empty")
    if not str(class_name).strip() or "/" in str(class_name):
        raise UserError(f"--class {class_name!r}: expected a non-empty name without '/'")
    maps = load_maps(maps_path, device)
    enc = load_decoder(encoder, maps.encoder_fingerprint, f"the CLIP maps {maps_path} map into the embeddings of")
    init_obj = to_nerf_init(to_nerf, init, nerfs_dir, encoder) if to_nerf else None
    clip = clip_of_maps(maps, clip_model, clip_pretrained, device)
    q = embed_query(clip, photos or None, text)
    emb = query_vectors(maps, q.embedding[None], "clip2nerf")[0]
    if not np.isfinite(emb).all():
        raise UserError(f"clip2nerf of {q.what} is not finite; are the CLIP maps {maps_path} intact?")
    archs = maps.config.get("archs") or []
    name = "image-" + slug(q.name) if q.kind == "image" else q.name
    gen = generated_set(emb[None], [class_name], [name], "+".join(archs),
                        encoder_fingerprint=enc.fingerprint, encoder_kind=enc.kind)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {"query": query_config(q, clip, maps), "arch": "+".join(archs), "from": f"generate from-{q.kind}"}
    inputs = {"encoder": enc.fingerprint, "clip": clip.fingerprint, "clip_maps": fingerprint_path(maps_path)}
    if q.photos:
        inputs["photos"] = fingerprint_paths(q.photos)
    summary = FromClipSummary(out, q, emb, write_generated(out / "generated.h5", gen, str(maps_path), config, inputs))
    decoder = enc.model.decoder
    if render:
        summary.png, summary.gif = render_sample(decoder, emb, out / name, view_settings or ViewSettings())
    if init_obj is not None:
        summary.nerfs, psnr = fit_generated(decoder, gen, [0], init_obj, fit_config,
                                            out / "nerfs" / init_obj.spec.name / "generated.h5", summary.generated,
                                            f"generate from-{q.kind}", device, progress)
        summary.nerf_psnr = psnr[0] if psnr else math.nan
    return summary


__all__ = ["DEFAULT_CLASS", "FromClipSummary", "query_config", "default_out", "run_from_clip"]
