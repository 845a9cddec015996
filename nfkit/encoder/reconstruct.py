"""Decoder reconstructions: what an embedding looks like, next to the NeRF it came from.

Each NeRF is embedded straight from its weights, the embedding is decoded by the encoder's
implicit decoder and both are rendered from the same turntable cameras on black. The decoder
is rendered through an occupancy grid built from its own density (as any NeRF is), so the
picture shows what the embedding alone holds. Rows of the PNG: the NeRF, then the decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nfkit.errors import UserError
from nfkit.render.rays import turntable_cameras


@dataclass
class Reconstruction:
    key: str
    arch: str
    path: Path
    psnr: float  # decoder vs NeRF over the views, dB


@torch.no_grad()
def decoder_views(decoder, embedding: torch.Tensor, c2w: torch.Tensor, res: int, focal: float,
                  n_samples: int, grid_res: int) -> np.ndarray:
    """Views of one decoded embedding. embedding (D,), c2w (V, 4, 4) -> (V, res, res, 3)"""
    from nfkit.data.cameras import camera_rays
    from nfkit.render.renderer import default_step_size, grid_from_field, render_batch

    field = decoder.field(embedding[None])
    grid = grid_from_field(field, grid_res, default_step_size(n_samples))
    o, d = camera_rays(c2w, res, res, focal)
    o, d = o.reshape(1, -1, 3).contiguous(), d.reshape(1, -1, 3).contiguous()
    rgb = torch.cat([render_batch(field, o[:, s : s + 8192], d[:, s : s + 8192], n_samples, grid).rgb
                     for s in range(0, o.shape[1], 8192)], dim=1)
    return rgb.reshape(c2w.shape[0], res, res, 3).numpy()


def reconstruct(encoder_path: Path, records, out: Path, views: int = 4, resolution: int = 96,
                elevation_deg: float = 30.0, distance: float = 3.4, fov_x: float = 0.8,
                n_samples: int = 128, grid_res: int = 64, progress: bool = False) -> list[Reconstruction]:
    """Render each NeRF and its decoder reconstruction side by side into ``out``."""
    from tqdm import tqdm

    from nfkit.encoder.embed import embed_records, load_encoder
    from nfkit.render.views import _hstack, _save_grid, render_views

    enc = load_encoder(encoder_path)
    if enc.model.decoder is None:
        raise UserError(f"{encoder_path}: trained with loss c, it has no decoder to reconstruct with")
    records = list(records)
    es = embed_records(enc, records)
    index = {(a, c, o): i for i, (a, c, o) in enumerate(zip(es.arch, es.class_name, es.object_id, strict=True))}
    c2w = turntable_cameras(views, elevation_deg, distance)
    focal = 0.5 * resolution / math.tan(0.5 * fov_x)
    results = []
    for rec in tqdm(records, desc="reconstruct", unit="NeRF", disable=not progress):
        nerf = render_views(rec.arch, rec.params, c2w, resolution, resolution, focal, n_samples, grid_res, sin=rec.sin)
        emb = torch.from_numpy(es.embedding[index[(rec.arch.name, rec.class_name, rec.object_id)]])
        dec = decoder_views(enc.model.decoder, emb, c2w, resolution, focal, n_samples, grid_res)
        mse = float(np.mean((nerf - dec) ** 2))
        path = out / rec.arch.name / rec.class_name / f"{rec.object_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_grid([_hstack(list(nerf)), _hstack(list(dec))], path)
        results.append(Reconstruction(rec.key, rec.arch.name, path, 10 * math.log10(1 / max(mse, 1e-10))))
    return results
