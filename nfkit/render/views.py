"""Rendering stored NeRFs to images: dataset cameras (next to the ground truth), a turntable,
or the cameras of any Blender-convention transforms file (one PNG per view, with the PSNR per
view where the file's ground-truth images exist).

Uses the fitter's code path (:func:`nfkit.render.renderer.render_rays`: box intersection,
an occupancy grid rebuilt from the NeRF's density, compositing) on a black background.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nfkit.errors import ConfigError, NfkitError, UserError
from nfkit.io.lock import locks_output
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
    sin: str = "exact",
) -> np.ndarray:
    """Images of one NeRF (canonical params) from cameras ``c2w`` on black, its frequency
    encoding evaluated with ``sin`` (the NeRF's own: ``NerfRecord.sin``).

    Shapes: c2w (V, 4, 4) -> (V, H, W, 3) float32 in [0, 1]; row 0 is the top of the image.
    """
    from nfkit.data.cameras import camera_rays

    c2w = torch.as_tensor(np.asarray(c2w, dtype=np.float32))
    origins, dirs = camera_rays(c2w, height, width, float(focal))
    tensors = {k: torch.as_tensor(np.asarray(v, np.float32), device=device)[None] for k, v in params.items()}
    grid = build_grid(spec, tensors, grid_res, default_step_size(n_samples), sin=sin)
    out = render_rays(
        spec,
        tensors,
        origins.reshape(1, -1, 3).to(device),
        dirs.reshape(1, -1, 3).to(device),
        n_samples=n_samples,
        grid=grid,
        chunk=chunk,
        sin=sin,
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
    """PSNR (dB) of the renders against the ground truth on black (dataset cameras, or a
    cameras file with its images: over every view that has one), else NaN."""
    n_views: int
    view_psnr: list[float] = field(default_factory=list)
    """Cameras file: the PSNR of each view (NaN where the view has no ground truth)."""
    psnr_file: Path | None = None
    """Cameras file with ground truth: the JSON with the per-view PSNR."""


def _pick_views(n_views: int, wanted: int, eval_every: int) -> list[int]:
    """Held-out views first (as in fitting: 0, N, 2N, ...), then evenly spaced others."""
    held = [v for v in range(n_views) if eval_every and v % eval_every == 0]
    pool = held if len(held) >= wanted else held + [v for v in range(n_views) if v not in held]
    if wanted >= len(pool):
        return sorted(pool)
    pick = np.unique(np.linspace(0, len(pool) - 1, wanted).round().astype(int))
    return sorted(pool[i] for i in pick)


BYTES_PER_PIXEL = 96
"""Memory one rendered pixel takes at once (float64 camera directions, float32 ray origins,
directions, colours and the image copies); bounds a render before it is allocated."""
MAX_RESOLUTION = 16384
BOX_HALF_DIAGONAL = 0.7 * math.sqrt(3.0)
"""A turntable camera closer to the origin than this may sit inside the object box."""


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 1 << 34


def check_render_size(n_views: int, height: int, width: int) -> None:
    """Refuse a render whose images cannot be held in memory, before allocating them."""
    if not 1 <= width <= MAX_RESOLUTION or not 1 <= height <= MAX_RESOLUTION:
        raise ConfigError(f"image size {width}x{height} is outside 1..{MAX_RESOLUTION} pixels")
    need = n_views * height * width * BYTES_PER_PIXEL
    have = _physical_memory()
    if need > have // 2:
        raise ConfigError(
            f"{n_views} view(s) of {width}x{height} pixels need about {need / 2**30:.1f} GiB, "
            f"more than half of this machine's {have / 2**30:.1f} GiB; use a smaller --resolution or fewer views"
        )


def check_render_options(
    cameras: str, turntable: int, views: int, resolution: int, elevation_deg: float, distance: float,
    fov_x: float, n_samples: int, grid_res: int, limit: int,
) -> None:
    """One-line :class:`ConfigError` for render options that would crash or give meaningless
    images (no samples, a camera inside the box, a NaN angle, ...)."""
    checks = [
        (n_samples >= 1, f"--samples must be >= 1, got {n_samples}"),
        (grid_res >= 1, f"--grid-res must be >= 1, got {grid_res}"),
        (limit >= 0, f"--limit must be >= 0 (0 = all), got {limit}"),
        (0 <= resolution <= MAX_RESOLUTION, f"--resolution must be in 0..{MAX_RESOLUTION} (0 = default), got {resolution}"),
    ]
    if cameras == "turntable":  # "views": dataset cameras or a transforms file
        checks += [
            (turntable >= 1, f"--turntable must be >= 1 view, got {turntable}"),
            (math.isfinite(elevation_deg) and -90.0 < elevation_deg < 90.0,
             f"--elevation must be a finite angle in (-90, 90) degrees, got {elevation_deg}"),
            (math.isfinite(distance) and distance > BOX_HALF_DIAGONAL,
             f"--distance must be finite and > {BOX_HALF_DIAGONAL:.3f} (outside the object box), got {distance}"),
            (math.isfinite(fov_x) and 0.0 < fov_x < math.pi, f"--fov must be in (0, pi) radians, got {fov_x}"),
        ]
    else:
        checks.append((views >= 1, f"--views must be >= 1, got {views}"))
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _collect_jobs(shards, wanted_arch, wanted, failures):
    """(record, eval_every) of every NeRF to render, and the ``wanted`` names matched; a shard
    that cannot be read is reported in ``failures`` (or raised when it is None); the same NeRF
    in two shards is refused (both would be rendered to one file)."""
    from nfkit.io.artifacts import read_header
    from nfkit.nerf.store import read_nerf_shard

    jobs, seen, matched = [], {}, set()
    for shard in shards:
        try:
            header = read_header(shard)
            records = read_nerf_shard(shard)
        except NfkitError as exc:
            if failures is None:
                raise
            failures.append(str(exc).strip().splitlines()[0])
            continue
        eval_every = int(header["config"].get("fit", {}).get("eval_every", 0) or 0)
        for rec in records:
            if wanted_arch and rec.arch.name.lower() not in wanted_arch:
                continue
            if wanted is not None:
                hits = wanted & {rec.key, rec.object_id}
                if not hits:
                    continue
                matched |= hits
            key = (rec.arch.name, rec.key)
            if key in seen:
                raise UserError(
                    f"{rec.arch.name} {rec.key} is in both {seen[key]} and {shard}: both would be rendered "
                    "to the same file; render them separately (other --out) or pass one of the shards"
                )
            seen[key] = shard
            jobs.append((rec, eval_every))
    return jobs, matched


@locks_output()
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
    objects: Sequence[str] | None = None,
    failures: list[str] | None = None,
) -> list[RenderedNerf]:
    """Render NeRF artifacts to ``out/<arch>/<class>/<object_id>.png``.

    ``cameras="dataset"``: ``views`` of the object's own cameras (held-out views first), each
    row ground truth | render. ``cameras="turntable"``: ``turntable`` views around the
    vertical axis at ``elevation_deg``, ``distance`` and horizontal field of view ``fov_x``.
    Any other value is a transforms file (Blender convention, :func:`load_cameras`): one PNG
    per view, ``out/<arch>/<class>/<object_id>/<k>_<frame>.png``, and where the file's
    ground-truth images exist the PSNR per view on black, also written to ``psnr.json`` there.
    ``objects``: only these NeRFs (``class/object_id`` or ``object_id``). Every NeRF is
    evaluated with the sine it was trained with (``NerfRecord.sin``).

    With a ``failures`` list, a shard that cannot be read (corrupt, NaN weights) is reported
    there in one line and the other shards are rendered; without it, the error is raised.
    """
    from nfkit.io.artifacts import check_output_dir
    from nfkit.nerf.store import find_shards

    camera_set = None
    if cameras not in ("dataset", "turntable"):
        from nfkit.data.multiview import load_cameras

        if not Path(cameras).is_file():
            raise ConfigError(f"--cameras must be 'dataset', 'turntable' or a transforms .json file; {cameras}: no such file")
        camera_set = load_cameras(cameras, resolution=resolution or None)
    check_render_options(
        "turntable" if cameras == "turntable" else "views", turntable, views, resolution, elevation_deg,
        distance, fov_x, n_samples, grid_res, limit,
    )
    if cameras == "turntable":
        res = resolution or 128
        check_render_size(turntable, res, res)
    elif camera_set is not None:
        check_render_size(len(camera_set.c2w), camera_set.height, camera_set.width)
    entries = {}
    if cameras == "dataset":
        if dataset is None:
            raise UserError("--cameras dataset needs --dataset DIR (the multi-view dataset the NeRFs were fitted on)")
        from nfkit.data.multiview import scan_dataset

        entries = {f"{e.class_name}/{e.object_id}": e for e in scan_dataset(Path(dataset))}
    shards = find_shards(nerfs)
    if not shards:
        raise FileNotFoundError(f"no NeRF shards (*.h5) found in {', '.join(map(str, nerfs))}")
    out = check_output_dir(out, "--out")
    wanted_arch = {a.lower() for a in arch} if arch else None
    wanted = {o.strip().strip("/") for o in objects if o.strip()} if objects else None
    jobs, matched = _collect_jobs(shards, wanted_arch, wanted, failures)
    if wanted is not None and wanted - matched:
        raise UserError(
            f"--object {', '.join(sorted(wanted - matched))}: no such NeRF in {', '.join(map(str, nerfs))}"
            + (f" (architectures {', '.join(sorted(wanted_arch))})" if wanted_arch else "")
        )
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
            if camera_set is not None:
                results.append(_render_camera_set(rec, camera_set, path.with_suffix(""), n_samples, grid_res, device))
            elif cameras == "dataset":
                results.append(
                    _render_dataset(rec, entries, path, views, resolution, eval_every, n_samples, grid_res, device)
                )
            else:
                c2w = turntable_cameras(turntable, elevation_deg, distance)
                focal = 0.5 * res / math.tan(0.5 * fov_x)
                imgs = render_views(rec.arch, rec.params, c2w, res, res, focal, n_samples, grid_res, device, sin=rec.sin)
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
        raise UserError(f"NeRF {rec.key} ({rec.shard}) is not an object of the --dataset folder")
    try:
        obj = load_object(entry, resolution=resolution or None)
    except ValueError as exc:
        if "resolution must be" not in str(exc):
            raise
        obj = load_object(entry)
    pick = _pick_views(len(obj.images), max(views, 1), eval_every)
    check_render_size(len(pick), obj.height, obj.width)
    imgs = render_views(
        rec.arch, rec.params, obj.c2w[pick], obj.height, obj.width, obj.focal, n_samples, grid_res, device, sin=rec.sin
    )
    gt = obj.composite((0.0, 0.0, 0.0))[pick]
    mse = float(np.mean((imgs - gt) ** 2))
    _save_grid([_hstack([g, r]) for g, r in zip(gt, imgs, strict=True)], path)
    return RenderedNerf(rec.key, rec.arch.name, path, -10 * math.log10(max(mse, 1e-12)), len(pick))


def _psnr(render: np.ndarray, truth: np.ndarray) -> float:
    mse = float(np.mean((render.astype(np.float64) - truth) ** 2))
    return -10 * math.log10(max(mse, 1e-12))


def _render_camera_set(rec, cams, folder: Path, n_samples, grid_res, device) -> RenderedNerf:
    """One PNG per view of ``cams`` in ``folder``; PSNR per view where ground truth exists."""
    from nfkit.io.artifacts import atomic_path

    imgs = render_views(
        rec.arch, rec.params, cams.c2w, cams.height, cams.width, cams.focal, n_samples, grid_res, device, sin=rec.sin
    )
    folder.mkdir(parents=True, exist_ok=True)
    view_psnr, sq_err, n_gt = [], 0.0, 0
    for k, (img, name) in enumerate(zip(imgs, cams.names, strict=True)):
        _save_grid([img], folder / f"{k:03d}_{name}.png")
        gt = cams.images[k]
        if gt is None:
            view_psnr.append(math.nan)
            continue
        truth = gt[..., :3].astype(np.float64) * gt[..., 3:]  # on black
        view_psnr.append(_psnr(img, truth))
        sq_err += float(np.mean((img.astype(np.float64) - truth) ** 2))
        n_gt += 1
    psnr = -10 * math.log10(max(sq_err / n_gt, 1e-12)) if n_gt else math.nan
    psnr_file = None
    if n_gt:
        psnr_file = folder / "psnr.json"
        record = {
            "nerf": rec.key,
            "arch": rec.arch.name,
            "shard": str(rec.shard),
            "cameras": str(cams.path),
            "background": "black",
            "psnr": psnr,
            "views": [
                {"view": k, "name": name, "psnr": None if math.isnan(p) else p}
                for k, (name, p) in enumerate(zip(cams.names, view_psnr, strict=True))
            ],
        }
        with atomic_path(psnr_file) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")
    return RenderedNerf(rec.key, rec.arch.name, folder, psnr, len(imgs), view_psnr, psnr_file)
