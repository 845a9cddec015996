"""Rendering stored NeRFs to images: dataset cameras (next to the ground truth) or a turntable.

Uses the fitter's code path (:func:`nfkit.render.renderer.render_rays`: box intersection,
an occupancy grid rebuilt from the NeRF's density, compositing) on a black background.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nfkit.render.rays import turntable_cameras
from nfkit.render.renderer import build_grid, default_step_size, render_rays

log = logging.getLogger(__name__)


@torch.no_grad()
def render_views(
    spec,
    params: Mapping[str, np.ndarray],
    c2w: np.ndarray | torch.Tensor,
    height: int,
    width: int,
    focal: float,
    n_samples: int = 128,
    grid_res: int = 64,
    device: str | torch.device = "cpu",
    chunk: int = 8192,
) -> np.ndarray:
    """Images of one NeRF (canonical params) from cameras ``c2w`` on black.

    Shapes: c2w (V, 4, 4) -> (V, H, W, 3) float32 in [0, 1].
    """
    from nfkit.data.cameras import camera_rays

    c2w = torch.as_tensor(np.asarray(c2w, dtype=np.float32))
    origins, dirs = camera_rays(c2w, height, width, float(focal))
    tensors = {k: torch.as_tensor(np.asarray(v, np.float32), device=device)[None] for k, v in params.items()}
    grid = build_grid(spec, tensors, grid_res, default_step_size(n_samples))
    out = render_rays(
        spec,
        tensors,
        origins.reshape(1, -1, 3).to(device),
        dirs.reshape(1, -1, 3).to(device),
        n_samples=n_samples,
        grid=grid,
        chunk=chunk,
    )
    return out.rgb.clamp(0, 1).reshape(len(c2w), height, width, 3).cpu().numpy()


def _to_u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _save_grid(rows: Sequence[np.ndarray], path: Path, pad: int = 2) -> None:
    """Stack rows of (H, W', 3) images vertically with a grey gap; write a PNG atomically."""
    from PIL import Image

    from nfkit.io.artifacts import atomic_path

    width = max(r.shape[1] for r in rows)
    gap = np.full((pad, width, 3), 0.5, np.float32)
    parts = []
    for r in rows:
        if r.shape[1] < width:
            r = np.concatenate([r, np.zeros((r.shape[0], width - r.shape[1], 3), np.float32)], axis=1)
        parts += [r, gap]
    canvas = np.concatenate(parts[:-1], axis=0)
    with atomic_path(path, suffix=".png.tmp") as tmp:
        Image.fromarray(_to_u8(canvas)).save(tmp, format="PNG")


def _hstack(images: Sequence[np.ndarray], pad: int = 2) -> np.ndarray:
    h = images[0].shape[0]
    gap = np.full((h, pad, 3), 0.5, np.float32)
    parts = []
    for im in images:
        parts += [im, gap]
    return np.concatenate(parts[:-1], axis=1)


@dataclass
class RenderedNerf:
    key: str
    arch: str
    path: Path
    psnr: float
    """PSNR (dB) of the renders against the ground truth on black (dataset cameras), else NaN."""
    n_views: int


def _pick_views(n_views: int, wanted: int, eval_every: int) -> list[int]:
    """Held-out views first (as in fitting: 0, N, 2N, ...), then evenly spaced others."""
    held = [v for v in range(n_views) if eval_every and v % eval_every == 0]
    pool = held if len(held) >= wanted else held + [v for v in range(n_views) if v not in held]
    if wanted >= len(pool):
        return sorted(pool)
    pick = np.unique(np.linspace(0, len(pool) - 1, wanted).round().astype(int))
    return sorted(pool[i] for i in pick)


def render_nerfs(
    nerfs: Sequence[str | Path],
    out: str | Path,
    cameras: str = "dataset",
    dataset: str | Path | None = None,
    turntable: int = 8,
    views: int = 4,
    resolution: int = 0,
    elevation_deg: float = 30.0,
    distance: float = 3.4,
    fov_x: float = 0.8,
    n_samples: int = 128,
    grid_res: int = 64,
    limit: int = 0,
    arch: Sequence[str] | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> list[RenderedNerf]:
    """Render NeRF artifacts to ``out/<arch>/<class>/<object_id>.png``.

    ``cameras="dataset"``: ``views`` of the object's own cameras (held-out views first), each
    row ground truth | render. ``cameras="turntable"``: ``turntable`` views around the
    vertical axis at ``elevation_deg``, ``distance`` and horizontal field of view ``fov_x``.
    """
    from nfkit.io.artifacts import read_header
    from nfkit.nerf.store import find_shards, read_nerf_shard

    if cameras not in ("dataset", "turntable"):
        raise ValueError(f"--cameras must be 'dataset' or 'turntable', got {cameras!r}")
    entries = {}
    if cameras == "dataset":
        if dataset is None:
            raise ValueError("--cameras dataset needs --dataset DIR (the multi-view dataset the NeRFs were fitted on)")
        from nfkit.data.multiview import scan_dataset

        entries = {f"{e.class_name}/{e.object_id}": e for e in scan_dataset(Path(dataset))}
    shards = find_shards(nerfs)
    if not shards:
        raise FileNotFoundError(f"no NeRF shards (*.h5) found in {', '.join(map(str, nerfs))}")
    out = Path(out)
    wanted_arch = {a.lower() for a in arch} if arch else None
    jobs = []
    for shard in shards:
        header = read_header(shard)
        eval_every = int(header["config"].get("fit", {}).get("eval_every", 0) or 0)
        for rec in read_nerf_shard(shard):
            if wanted_arch and rec.arch.name.lower() not in wanted_arch:
                continue
            jobs.append((rec, eval_every))
    if limit:
        jobs = jobs[:limit]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), unit="nerf", desc="render")
    results = []
    try:
        for rec, eval_every in jobs:
            path = out / rec.arch.name / rec.class_name / f"{rec.object_id}.png"
            if cameras == "dataset":
                results.append(
                    _render_dataset(rec, entries, path, views, resolution, eval_every, n_samples, grid_res, device)
                )
            else:
                res = resolution or 128
                c2w = turntable_cameras(turntable, elevation_deg, distance)
                focal = 0.5 * res / math.tan(0.5 * fov_x)
                imgs = render_views(rec.arch, rec.params, c2w, res, res, focal, n_samples, grid_res, device)
                per_row = 8
                rows = [_hstack(list(imgs[i : i + per_row])) for i in range(0, len(imgs), per_row)]
                _save_grid(rows, path)
                results.append(RenderedNerf(rec.key, rec.arch.name, path, math.nan, len(imgs)))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results


def _render_dataset(rec, entries, path, views, resolution, eval_every, n_samples, grid_res, device) -> RenderedNerf:
    from nfkit.data.multiview import load_object

    entry = entries.get(rec.key)
    if entry is None:
        raise ValueError(f"NeRF {rec.key} ({rec.shard}) is not an object of the --dataset folder")
    try:
        obj = load_object(entry, resolution=resolution or None)
    except ValueError as exc:
        if "resolution must be" not in str(exc):
            raise
        obj = load_object(entry)
    pick = _pick_views(len(obj.images), max(views, 1), eval_every)
    imgs = render_views(rec.arch, rec.params, obj.c2w[pick], obj.height, obj.width, obj.focal, n_samples, grid_res, device)
    gt = obj.composite((0.0, 0.0, 0.0))[pick]
    mse = float(np.mean((imgs - gt) ** 2))
    _save_grid([_hstack([g, r]) for g, r in zip(gt, imgs, strict=True)], path)
    return RenderedNerf(rec.key, rec.arch.name, path, -10 * math.log10(max(mse, 1e-12)), len(pick))
