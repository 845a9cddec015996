"""Interpolation between two NeRFs, in the embedding space and in the weight space.

Seed 003 Fig. 8 / seed 001 §4.4: the embeddings e_A, e_B of two NeRFs are interpolated as
(1 − γ)·e_A + γ·e_B and decoded; next to them, the NeRFs' own weights are interpolated the same
way and rendered. Interpolating weights means something only for NeRFs of one architecture
fitted from one shared init (linear mode connectivity, seed 003 §VIII), so pairs of different
architectures or inits are refused (the embedding row alone can still be drawn with
``weights=False``: the embedding space is shared by every architecture).

Picture (PNG): one column per γ; row 1 the decoded embeddings, row 2 the interpolated weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfkit.errors import IncompatibleError, UserError
from nfkit.nerf.store import NerfRecord


def lerp(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """(1 − γ)·a + γ·b, exactly a at γ = 0 and exactly b at γ = 1. Shapes: any, equal."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape:
        raise ValueError(f"cannot interpolate arrays of shapes {a.shape} and {b.shape}")
    if gamma == 0.0:
        return a.copy()
    if gamma == 1.0:
        return b.copy()
    return ((1.0 - gamma) * a + gamma * b).astype(np.float32)


def gammas(steps: int) -> list[float]:
    """``steps`` evenly spaced values from 0 to 1 (both included)."""
    if steps < 2:
        raise UserError(f"an interpolation needs at least 2 steps, got {steps}")
    return [i / (steps - 1) for i in range(steps)]


def check_interpolable(a: NerfRecord, b: NerfRecord) -> None:
    """Refuse weight interpolation between NeRFs of other architectures, inits or sines."""
    if a.arch.fingerprint() != b.arch.fingerprint():
        raise IncompatibleError(
            f"{a.arch.name}:{a.key} and {b.arch.name}:{b.key} are of different architectures; weights "
            "interpolate only within one architecture (--embeddings-only draws the embedding row alone)"
        )
    if a.init_fingerprint != b.init_fingerprint:
        raise IncompatibleError(
            f"{a.key} and {b.key} were fitted from different inits ({a.init_fingerprint}, {b.init_fingerprint}); "
            "weights interpolate only between NeRFs of one shared init (--embeddings-only draws the embedding row alone)"
        )
    if a.sin != b.sin:
        raise IncompatibleError(f"{a.key} and {b.key} were trained with different sines ({a.sin}, {b.sin})")


def interpolate_params(a: NerfRecord, b: NerfRecord, gamma: float) -> dict[str, np.ndarray]:
    """The weights (1 − γ)·θ_A + γ·θ_B (canonical layout), after :func:`check_interpolable`."""
    check_interpolable(a, b)
    return {k: lerp(a.params[k], b.params[k], gamma) for k in a.params}


def find_record(nerfs: str | Path | Sequence[str | Path], selector: str) -> NerfRecord:
    """The NeRF ``[ARCH:]class/object_id`` under ``nerfs``; an unknown or ambiguous one is a
    one-line error listing what exists."""
    from nfkit.nerf.store import iter_nerfs

    arch, _, key = selector.rpartition(":")
    if "/" not in key:
        raise UserError(f"{selector!r}: expected [ARCH:]CLASS/OBJECT_ID, e.g. mlp:chair/0001")
    headers = list(iter_nerfs(nerfs, load_params=False))
    hits = [r for r in headers if r.key == key and (not arch or r.arch.name.lower() == arch.lower())]
    if not hits:
        some = ", ".join(sorted({f"{r.arch.name}:{r.key}" for r in headers})[:6])
        raise UserError(f"{selector!r}: no such NeRF in {nerfs} (e.g. {some})")
    if len(hits) > 1:
        raise UserError(f"{selector!r} is in {len(hits)} architectures ({', '.join(r.arch.name for r in hits)}); write ARCH:{key}")
    hit = hits[0]
    full = [r for r in iter_nerfs(hit.shard) if r.key == key]
    return full[0]


@dataclass
class Interpolation:
    """Shapes: embeddings (S, D); decoded (S, V, H, W, 3); weights (S, V, H, W, 3) or None."""

    gammas: list[float]
    embeddings: np.ndarray
    decoded: np.ndarray
    weights: np.ndarray | None
    path: Path | None = None


def interpolate_pair(enc, a: NerfRecord, b: NerfRecord, steps: int, settings, weights: bool = True,
                     out: Path | None = None, progress: bool = False) -> Interpolation:
    """Embed A and B (from their weights), render both interpolations (see module) and, with
    ``out``, write the PNG strip there. ``enc``: a loaded encoder with a decoder."""
    from tqdm.auto import tqdm

    from nfkit.encoder.embed import embed_records
    from nfkit.generate.render import embedding_views, save_rows, seeded
    from nfkit.render.views import render_views

    if weights:
        check_interpolable(a, b)
    if enc.model.decoder is None:
        raise UserError("the encoder was trained with loss c: it has no decoder to render embeddings with")
    es = embed_records(enc, [a, b])
    e_a, e_b = es.embedding[0], es.embedding[1]
    gs = gammas(steps)
    cams = settings.cameras()
    embs, dec_rows, w_rows = [], [], []
    for g in tqdm(gs, desc="interpolate", unit="step", disable=not progress, leave=False):
        e = lerp(e_a, e_b, g)
        embs.append(e)
        dec_rows.append(embedding_views(enc.model.decoder, e, settings, cams))
        if weights:
            p = interpolate_params(a, b, g)
            with seeded():
                w_rows.append(np.clip(render_views(a.arch, p, cams, settings.resolution, settings.resolution,
                                                   settings.focal, settings.n_samples, settings.grid_res, sin=a.sin), 0, 1))
    result = Interpolation(gs, np.stack(embs), np.stack(dec_rows), np.stack(w_rows) if weights else None)
    if out is not None:
        # one column per γ (the first camera of the turntable)
        rows = [[d[0] for d in result.decoded]]
        if result.weights is not None:
            rows.append([w[0] for w in result.weights])
        result.path = save_rows(rows, out)
    return result


__all__ = ["lerp", "gammas", "check_interpolable", "interpolate_params", "find_record", "Interpolation", "interpolate_pair"]
