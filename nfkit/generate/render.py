"""Pictures of embeddings through the implicit decoder: views, strips (PNG) and turntables (GIF).

Cameras: the turntable of ``nfkit render --decoder`` (elevation 30°, distance 3.4, horizontal
field of view 0.8 rad; the dataset's upper hemisphere); images on black.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nfkit.errors import UserError
from nfkit.io.artifacts import atomic_path
from nfkit.render.rays import turntable_cameras


@contextlib.contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """Run a render with the global torch RNG seeded (the occupancy grid is built from jittered
    samples of the global RNG), restoring the caller's state after: the same embedding gives the
    same picture every time."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class ViewSettings:
    """Cameras and sampling of the decoder renders."""

    views: int = 8
    resolution: int = 64
    elevation_deg: float = 30.0
    distance: float = 3.4
    fov_x: float = 0.8
    n_samples: int = 96
    grid_res: int = 48

    def __post_init__(self) -> None:
        if self.views < 1 or self.resolution < 4 or self.n_samples < 1 or self.grid_res < 2:
            raise UserError(
                f"views >= 1, resolution >= 4, samples >= 1 and grid >= 2 needed, got {self.views}, "
                f"{self.resolution}, {self.n_samples}, {self.grid_res}"
            )

    @property
    def focal(self) -> float:
        return 0.5 * self.resolution / math.tan(0.5 * self.fov_x)

    def cameras(self, n_views: int | None = None) -> torch.Tensor:
        """(V, 4, 4) turntable camera-to-world matrices."""
        return turntable_cameras(n_views or self.views, self.elevation_deg, self.distance)


def embedding_views(decoder, embedding: np.ndarray | torch.Tensor, settings: ViewSettings,
                    c2w: torch.Tensor | None = None) -> np.ndarray:
    """Views of one decoded embedding on black. (D,) -> (V, res, res, 3) float32 in [0, 1]."""
    from nfkit.encoder.reconstruct import decoder_views

    emb = torch.as_tensor(np.asarray(embedding, dtype=np.float32))
    if emb.dim() != 1:
        raise ValueError(f"expected one embedding of shape (D,), got {tuple(emb.shape)}")
    cams = settings.cameras() if c2w is None else c2w
    with seeded():
        out = decoder_views(decoder, emb, cams, settings.resolution, settings.focal, settings.n_samples, settings.grid_res)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


@torch.no_grad()
def embedding_rgba(decoder, embedding: np.ndarray | torch.Tensor, c2w: torch.Tensor, resolution: int, focal: float,
                   n_samples: int, grid_res: int) -> np.ndarray:
    """RGBA views of one decoded embedding, RGB not premultiplied (the dataset's convention,
    so that they can be fitted like any object's images). (D,), (V, 4, 4) -> (V, res, res, 4)."""
    from nfkit.data.cameras import camera_rays
    from nfkit.render.renderer import default_step_size, grid_from_field, render_batch

    emb = torch.as_tensor(np.asarray(embedding, dtype=np.float32))[None]
    field = decoder.field(emb)
    with seeded():
        grid = grid_from_field(field, grid_res, default_step_size(n_samples))
    o, d = camera_rays(c2w, resolution, resolution, focal)
    o, d = o.reshape(1, -1, 3).contiguous(), d.reshape(1, -1, 3).contiguous()
    rgb, alpha = [], []
    for s in range(0, o.shape[1], 8192):
        out = render_batch(field, o[:, s : s + 8192], d[:, s : s + 8192], n_samples, grid)
        rgb.append(out.rgb)
        alpha.append(out.opacity)
    rgb_t, a_t = torch.cat(rgb, dim=1)[0], torch.cat(alpha, dim=1)[0].clamp(0.0, 1.0)
    colour = torch.where(a_t[:, None] > 1e-4, rgb_t / a_t[:, None].clamp_min(1e-4), torch.zeros_like(rgb_t))
    rgba = torch.cat([colour.clamp(0.0, 1.0), a_t[:, None]], dim=1)
    return rgba.reshape(c2w.shape[0], resolution, resolution, 4).numpy().astype(np.float32)


def save_rows(rows: Sequence[Sequence[np.ndarray]], path: Path) -> Path:
    """Rows of (H, W, 3) images as one PNG (grey gaps), written atomically."""
    from nfkit.render.views import _hstack, _save_grid

    if not rows or not all(len(r) for r in rows):
        raise ValueError("no images to save")
    _save_grid([_hstack(list(r)) for r in rows], Path(path))
    return Path(path)


def save_gif(frames: Sequence[np.ndarray], path: Path, seconds_per_frame: float = 0.12) -> Path:
    """A looping GIF of (H, W, 3) float frames in [0, 1], written atomically (PIL)."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames for a GIF")
    images = [Image.fromarray((np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8)) for f in frames]
    path = Path(path)
    with atomic_path(path, suffix=".gif.tmp") as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(1000 * seconds_per_frame), loop=0)
    return path


def render_sample(decoder, embedding: np.ndarray, base: Path, settings: ViewSettings | None = None) -> tuple[Path, Path]:
    """The turntable of one decoded embedding: ``base``.png (the views in a row) and
    ``base``.gif (one frame per view). embedding (D,). Returns (PNG, GIF)."""
    frames = list(embedding_views(decoder, embedding, settings or ViewSettings()))
    base = Path(base)
    return save_rows([frames], base.with_name(base.name + ".png")), save_gif(frames, base.with_name(base.name + ".gif"))


__all__ = ["seeded", "ViewSettings", "embedding_views", "embedding_rgba", "render_sample", "save_rows", "save_gif"]
