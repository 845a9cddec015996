"""Real NeRFs out: a (generated) embedding written as a NeRF of a chosen architecture.

No seed offers this. The embedding is decoded by the encoder's implicit decoder and rendered as
RGBA views from cameras like the dataset's (three rings of elevations in the upper hemisphere,
SPEC §2); the architecture is then fitted to those views from its **shared init** with the
ordinary fitter (:func:`nfkit.fit.trainer.fit_batch`, a ``fit-nerfs`` preset), exactly as it
would be fitted to an object's images. The result is a ``nerf-shard`` like any other, from the
same init as the encoder's training NeRFs of that architecture, so ``build-graphs``, ``embed``,
``render`` and ``classify --predict`` accept it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nfkit.errors import UserError
from nfkit.fit.config import FitConfig
from nfkit.nerf.init import NerfInit
from nfkit.nerf.store import NerfRecord

#: elevations (degrees) of the camera rings; the dataset draws them from 5°–55° (SPEC §2)
RING_ELEVATIONS = (10.0, 30.0, 50.0)
FIT_DISTANCE = 3.4
FIT_FOV_X = 0.8


@dataclass
class DecodedObject:
    """The views of a decoded embedding, shaped like :class:`nfkit.data.multiview.MultiViewObject`
    (what :func:`nfkit.fit.trainer.scene_from_object` reads).

    Shapes: images (V, H, W, 4) RGBA not premultiplied; c2w (V, 4, 4).
    """

    object_id: str
    class_name: str
    images: np.ndarray
    c2w: np.ndarray
    focal: float


def fit_cameras(n_views: int, distance: float = FIT_DISTANCE) -> torch.Tensor:
    """``n_views`` cameras on three rings (:data:`RING_ELEVATIONS`), azimuths staggered per
    ring, looking at the origin. -> (n_views, 4, 4) float32."""
    from nfkit.data.cameras import look_at, orbit_eyes

    if n_views < 3:
        raise UserError(f"fitting a NeRF to decoder views needs at least 3 views, got {n_views}")
    ring = np.arange(n_views) % len(RING_ELEVATIONS)
    az = np.arange(n_views) * (2 * math.pi / n_views) * 1.0 + ring * 0.37
    el = np.radians(np.asarray(RING_ELEVATIONS)[ring])
    return torch.from_numpy(look_at(orbit_eyes(az, el, np.full(n_views, distance)))).float()


def decoded_object(decoder, embedding: np.ndarray, class_name: str, object_id: str, n_views: int,
                   resolution: int, n_samples: int = 96, grid_res: int = 48) -> DecodedObject:
    """Render the RGBA views a NeRF is fitted to. embedding (D,)."""
    from nfkit.generate.render import embedding_rgba

    c2w = fit_cameras(n_views)
    focal = 0.5 * resolution / math.tan(0.5 * FIT_FOV_X)
    images = embedding_rgba(decoder, embedding, c2w, resolution, focal, n_samples, grid_res)
    return DecodedObject(object_id, class_name, images, c2w.numpy(), focal)


def embeddings_to_nerfs(
    decoder,
    embeddings: np.ndarray,
    names: Sequence[tuple[str, str]],
    init: NerfInit,
    config: FitConfig,
    n_views: int = 24,
    split: str = "generated",
    source: str = "",
    device: str = "cpu",
    progress: bool = False,
) -> list[NerfRecord]:
    """Fit ``init.spec`` from ``init`` to the decoder views of each embedding.

    Shapes: embeddings (K, D); names K (class_name, object_id) pairs. Returns K records
    (``split``; ``psnr`` on held-out decoder views, ``psnr_on="held-out-train-views"``).
    """
    from nfkit.fit.trainer import fit_batch, scene_from_object

    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) != len(names):
        raise ValueError(f"expected (K, D) embeddings and K names, got {embeddings.shape} and {len(names)}")
    config = config.resolved(device=device)
    resolution = config.resolution or 64
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(names), unit="NeRF", desc=f"to-nerf {init.spec.name}", leave=False)
    records: list[NerfRecord] = []
    try:
        for start in range(0, len(names), config.batch_nerfs):
            chunk = range(start, min(start + config.batch_nerfs, len(names)))
            scenes = []
            for k in chunk:
                obj = decoded_object(decoder, embeddings[k], names[k][0], names[k][1], n_views, resolution,
                                     config.render_samples, max(config.grid_res, 16))
                scenes.append(scene_from_object(obj, config.eval_every, device))
            results = fit_batch(init.spec, init.params, scenes, config, device=device)
            for k, res in zip(chunk, results, strict=True):
                if not all(np.isfinite(v).all() for v in res.params.values()):
                    raise UserError(f"fitting {init.spec.name} to the decoder views of {names[k][0]}/{names[k][1]} diverged")
                records.append(NerfRecord(
                    names[k][1], names[k][0], split, init.spec, init.fingerprint, res.params, psnr=res.psnr,
                    fit_seconds=res.seconds, source=source, psnr_on="held-out-train-views" if config.eval_every else "",
                ))
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return records


def find_init(arch: str, init: str | Path | None, nerfs_dir: Path) -> NerfInit:
    """The shared init of ``arch``: ``init`` (a file) when given, else
    ``<nerfs_dir>/inits/<arch>.init.h5``; a missing one is a one-line error."""
    from nfkit.nerf.init import check_init_matches, init_path, load_init
    from nfkit.nerf.specs import get_arch

    spec = get_arch(arch)
    path = Path(init) if init is not None else init_path(spec, nerfs_dir / "inits")
    if not path.is_file():
        raise UserError(
            f"{path}: no shared init of {spec.name} (the init its NeRFs were fitted from; give --init)"
        )
    loaded = load_init(path)
    check_init_matches(loaded, spec)
    return loaded


__all__ = ["DecodedObject", "fit_cameras", "decoded_object", "embeddings_to_nerfs", "find_init", "RING_ELEVATIONS"]
