"""Images for CLIP: any photo file as RGB, and batches resized, cropped and normalised.

:func:`load_photo` reads PNG or JPEG (anything Pillow opens) of any size and aspect in every
common mode: RGB, RGBA / LA / palette with transparency (composited on black, the background
of nfkit's renders and of the reference's views), greyscale ``L``, 16-bit greyscale
(``I;16`` / ``I``, scaled by 65535), 32-bit float ``F``, ``CMYK`` and 1-bit; the EXIF
orientation tag is applied first (``PIL.ImageOps.exif_transpose``), so a phone photo taken
sideways is upright. A missing, empty or unreadable file raises a one-line
:class:`~nfkit.errors.UserError`.

:func:`prepare_batch` is the CLIP preprocessing in torch (what open_clip's default transform
does for ``resize_mode="shortest"``): resize the shorter side to the model's input size
(bicubic, antialiased), centre crop, normalise by the model's mean and std. Photos, dataset
views and rendered views all go through it, so they are treated alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nfkit.errors import UserError


def _to_float_rgb(img) -> np.ndarray:
    """A PIL image (any mode) -> (H, W, 3) float32 in [0, 1], transparency composited on black."""
    from PIL import Image

    mode = img.mode
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.float32) / 65535.0
        return np.repeat(arr[..., None], 3, axis=-1)
    if mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return np.repeat((np.clip(arr, 0, scale) / scale).astype(np.float32)[..., None], 3, axis=-1)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        hi = float(arr.max(initial=0.0))
        arr = arr / (255.0 if hi > 1.0 else 1.0)
        return np.repeat(np.clip(arr, 0, 1)[..., None], 3, axis=-1)
    if mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        return rgba[..., :3] * rgba[..., 3:4]
    if mode != "RGB":
        img = img.convert("RGB")
    if not isinstance(img, Image.Image):  # pragma: no cover - defensive
        raise TypeError(type(img))
    return np.asarray(img, dtype=np.float32) / 255.0


def load_photo(path: str | Path) -> np.ndarray:
    """Read one photo as RGB on black. Shapes: -> (H, W, 3) float32 in [0, 1], upright
    (EXIF orientation applied). UserError (one line) if the file is missing, empty or not an
    image Pillow can decode."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such image file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected an image file (PNG or JPEG)")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file, expected an image (PNG or JPEG)")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_float_rgb(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise UserError(f"{path}: not a readable image ({reason})") from None
    if rgb.ndim != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise UserError(f"{path}: image has no pixels")
    return np.ascontiguousarray(rgb, dtype=np.float32)


def resize_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """Shorter side to ``size`` (bicubic, antialiased), then a centre crop to size × size.

    Shapes: (3, H, W) float -> (3, size, size) float in [0, 1].
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(image.shape)}")
    _, h, w = image.shape
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        image = F.interpolate(image[None], size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return image[:, top : top + size, left : left + size].clamp(0.0, 1.0)


def prepare_batch(
    images: Sequence[np.ndarray] | np.ndarray,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """CLIP input tensor from RGB images of any sizes.

    Shapes: images[i] (H_i, W_i, 3) float in [0, 1] (or uint8) -> (N, 3, size, size) float32.
    """
    out = []
    for i, im in enumerate(images):
        arr = np.asarray(im)
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise ValueError(f"image {i}: expected (H, W, 3) RGB, got shape {arr.shape}")
        arr = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0)
        out.append(resize_crop(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1), size))
    if not out:
        return torch.zeros(0, 3, size, size)
    batch = torch.stack(out)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (batch - m) / s


__all__ = ["load_photo", "resize_crop", "prepare_batch"]
