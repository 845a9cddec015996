"""Rendering-loss targets: what the frozen input NeRFs look like (seed 000 §4, seed 001 §3.3).

The targets come from rendering each input NeRF with nfkit's own renderer, not from the images
(I/O speed, and the encoder learns the NeRF, not the photos). Per NeRF, once:

- its occupancy grid (rebuilt from its density, as every renderer does);
- a pool of **foreground rays**: rays cast from random points on a shell around the object
  toward random points of the box, rendered by the NeRF on black; the rays whose opacity
  exceeds ``min_opacity`` are kept (pixel colour and opacity), up to ``pool_rays``;
- a pool of **background points**: jittered points in the grid's empty cells.

A training step draws ``fg_rays`` rays and ``bg_points`` points per NeRF from the pools; the
decoder marches the same rays through the same grid (so it is evaluated only at the NeRF's
occupied samples, the "foreground samples") and is composited on a random background colour,
whose effect on the target is exact: ``target = rgb_black + (1 − opacity)·background``.

Targets are cached in ``<encoder out>/targets.h5`` (kind ``render-targets``), keyed by each
NeRF's weights fingerprint, so reruns and the other loss modes reuse them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nfkit.io.artifacts import (
    ArtifactError,
    open_artifact,
    read_checked,
    register_kind,
    write_artifact,
)
from nfkit.render.occupancy import OccupancyGrid
from nfkit.render.rays import DEFAULT_AABB
from nfkit.render.renderer import build_grid, default_step_size, render_batch

log = logging.getLogger(__name__)

RENDER_TARGETS = "render-targets"
RENDER_TARGETS_VERSION = 1
register_kind(RENDER_TARGETS, RENDER_TARGETS_VERSION)


@dataclass(frozen=True)
class TargetSpec:
    """How targets are made (part of the cache key)."""

    pool_rays: int = 2048  # foreground rays kept per NeRF
    cast_rays: int = 8192  # rays cast per NeRF to find them
    bg_pool: int = 4096  # background points per NeRF
    n_samples: int = 64  # samples per ray across the box (step = diagonal / n_samples)
    grid_res: int = 32
    min_opacity: float = 0.05
    seed: int = 0

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class NerfTargets:
    """Targets of one NeRF.

    Shapes: grid (R, R, R) bool; origins, dirs, rgb (P, 3); opacity (P,); bg_points (Q, 3)
    """

    grid: Tensor
    origins: Tensor
    dirs: Tensor
    rgb: Tensor
    opacity: Tensor
    bg_points: Tensor


def weights_fingerprint(params: dict[str, np.ndarray]) -> str:
    """Content fingerprint of a NeRF's weights (16 hex chars of a SHA-256)."""
    h = hashlib.sha256()
    for name in sorted(params):
        h.update(name.encode())
        h.update(np.ascontiguousarray(params[name], dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def random_rays(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Rays from a shell of radius 1.6–2.4 around the object toward random points of the
    inner box [−0.5, 0.5]³ (upper hemisphere favoured, as the dataset's cameras are).

    Shapes: -> origins (n, 3), dirs (n, 3) unit length
    """
    az = torch.rand(n, generator=generator) * 2 * np.pi
    el = torch.asin(torch.rand(n, generator=generator) * 1.2 - 0.2)  # sin(el) in [-0.2, 1]
    r = 1.6 + 0.8 * torch.rand(n, generator=generator)
    origins = torch.stack(
        [r * torch.cos(el) * torch.sin(az), r * torch.sin(el), r * torch.cos(el) * torch.cos(az)], dim=-1
    )
    aim = torch.rand(n, 3, generator=generator) - 0.5
    dirs = torch.nn.functional.normalize(aim - origins, dim=-1)
    return origins, dirs


def aimed_rays(grid: OccupancyGrid, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` rays per NeRF from a shell around the object (radius 1.6–2.4, upper hemisphere
    favoured, as the dataset's cameras are) toward random points of the NeRF's occupied cells,
    so that thin and small objects get foreground rays too.

    Shapes: -> origins (B, n, 3), dirs (B, n, 3) unit length
    """
    b, res = grid.n_nerfs, grid.resolution
    lo, hi = grid.aabb
    origins, _ = random_rays(b * n, generator)
    aims = []
    for i in range(b):
        cells = torch.nonzero(grid.binary[i].flatten())[:, 0]
        if cells.numel() == 0:
            cells = torch.arange(res**3)
        pick = cells[torch.randint(cells.numel(), (n,), generator=generator)]
        ijk = torch.stack([pick // (res * res), (pick // res) % res, pick % res], dim=-1).float()
        aims.append(lo + (ijk + torch.rand(n, 3, generator=generator)) / res * (hi - lo))
    origins = origins.reshape(b, n, 3)
    dirs = torch.nn.functional.normalize(torch.stack(aims) - origins, dim=-1)
    return origins, dirs


def grid_of(binaries: Sequence[Tensor]) -> OccupancyGrid:
    """An :class:`OccupancyGrid` over B stored binary grids, each (R, R, R)."""
    b = torch.stack(list(binaries))
    grid = OccupancyGrid(b.shape[0], b.shape[1], DEFAULT_AABB, device=b.device)
    grid.binary = b
    return grid


@torch.no_grad()
def compute_targets(
    spec, params_list: Sequence[dict[str, np.ndarray]], ts: TargetSpec, sin: str = "exact"
) -> list[NerfTargets]:
    """Targets of NeRFs of one architecture (and one sine), rendered in one batch."""
    from nfkit.nerf import field

    b = len(params_list)
    params = {
        k: torch.from_numpy(np.stack([p[k] for p in params_list]).astype(np.float32))
        for k in params_list[0]
    }
    step = default_step_size(ts.n_samples)
    gen = torch.Generator().manual_seed(ts.seed)
    grid = build_grid(spec, params, ts.grid_res, step, generator=gen, sin=sin)
    o, d = aimed_rays(grid, ts.cast_rays, gen)

    def fn(x: Tensor):
        return field.forward(spec, params, x, sin=sin)

    outs = [
        render_batch(fn, o[:, s : s + 4096], d[:, s : s + 4096], ts.n_samples, grid)
        for s in range(0, ts.cast_rays, 4096)
    ]
    rgb = torch.cat([r.rgb for r in outs], dim=1)
    opacity = torch.cat([r.opacity for r in outs], dim=1)
    result = []
    lo, hi = DEFAULT_AABB
    res = ts.grid_res
    for i in range(b):
        keep = torch.nonzero(opacity[i] > ts.min_opacity)[:, 0][: ts.pool_rays]
        if keep.numel() < 8:  # an (almost) empty NeRF: learn it from its most opaque rays
            keep = torch.argsort(opacity[i], descending=True)[: max(8, min(ts.pool_rays, 64))]
        empty = torch.nonzero(~grid.binary[i].flatten())[:, 0]
        if empty.numel() == 0:
            empty = torch.arange(res**3)
        pick = empty[torch.randint(empty.numel(), (ts.bg_pool,), generator=gen)]
        ijk = torch.stack([pick // (res * res), (pick // res) % res, pick % res], dim=-1).float()
        bg = lo + (ijk + torch.rand(ts.bg_pool, 3, generator=gen)) / res * (hi - lo)
        result.append(
            NerfTargets(
                grid=grid.binary[i].clone(),
                origins=o[i, keep].clone(),
                dirs=d[i, keep].clone(),
                rgb=rgb[i, keep].clone(),
                opacity=opacity[i, keep].clone(),
                bg_points=bg,
            )
        )
    return result


# ------------------------------------------------------------------------------ cache file
_FIELDS = ("grid", "origins", "dirs", "rgb", "opacity", "bg_points")


def load_cache(path: Path, ts: TargetSpec) -> dict[str, NerfTargets]:
    """Cached targets by weights fingerprint ({} when the file is missing or made otherwise)."""
    if not path.is_file():
        return {}
    try:
        with open_artifact(path, RENDER_TARGETS) as f:
            if str(f.attrs.get("target_spec", "")) != ts.key():
                log.info("%s: made with other target settings; recomputing", path)
                return {}
            return {
                fp: NerfTargets(**{k: torch.from_numpy(read_checked(f[fp][k], path)) for k in _FIELDS}) for fp in f
            }
    except (ArtifactError, KeyError, OSError) as exc:
        log.warning("%s: unreadable target cache (%s); recomputing", path, exc)
        return {}


def save_cache(path: Path, targets: dict[str, NerfTargets], ts: TargetSpec) -> None:
    with write_artifact(path, RENDER_TARGETS, RENDER_TARGETS_VERSION, config=json.loads(ts.key())) as f:
        f.attrs["target_spec"] = ts.key()
        for fp, t in targets.items():
            g = f.create_group(fp)
            for k in _FIELDS:
                g.create_dataset(k, data=getattr(t, k).numpy())


def nerf_sine(record) -> str:
    """The sine a NeRF's weights were trained with (``exact`` unless its shard says otherwise)."""
    return str(getattr(record, "sin", "exact") or "exact")


def targets_for(
    records, ts: TargetSpec, cache: Path | None, batch: int = 8, progress: bool = False
) -> list[NerfTargets]:
    """Targets of NeRF records (any architectures), from the cache where possible."""
    from tqdm import tqdm

    cached = load_cache(cache, ts) if cache is not None else {}
    fps = [weights_fingerprint(r.params) for r in records]
    todo: dict[tuple[str, str], list[int]] = {}
    for i, (r, fp) in enumerate(zip(records, fps, strict=True)):
        if fp not in cached:
            todo.setdefault((r.arch.fingerprint(), nerf_sine(r)), []).append(i)
    n_todo = sum(len(v) for v in todo.values())
    if n_todo:
        bar = tqdm(total=n_todo, desc="render targets", unit="NeRF", disable=not progress, leave=False)
        for (_, sine), idx in todo.items():
            for s in range(0, len(idx), batch):
                part = idx[s : s + batch]
                recs = [records[i] for i in part]
                out = compute_targets(recs[0].arch, [r.params for r in recs], ts, sine)
                for i, t in zip(part, out, strict=True):
                    cached[fps[i]] = t
                bar.update(len(part))
        bar.close()
        if cache is not None:
            save_cache(cache, cached, ts)
    return [cached[fp] for fp in fps]
