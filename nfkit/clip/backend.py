"""CLIP through open_clip (open-clip-torch), imported lazily on first use.

:func:`load_clip` builds any open_clip model by name (``ViT-B-32``, ``nfkit-clip-small``, ...)
with weights from a pretrained tag (``openai``: open_clip downloads them where a machine can
reach the hub), from a local checkpoint file, or none (random, seeded so that it is the same
model every time). nfkit's own model configs (``nfkit/clip/model_configs/*.json``, e.g. the
small CLIP that ``nfkit train-clip`` trains) are registered with
``open_clip.add_model_config`` on import, so open_clip loads them exactly like its own models:
``open_clip.create_model("nfkit-clip-small", pretrained="clip.pt")``.

Every loaded model carries a **fingerprint of its weights** (SHA-256 over the state_dict's
names, shapes and bytes): CLIP embeddings computed by one model are refused where another
model's are expected, whatever the name or path.

:meth:`ClipModel.encode_images` and :meth:`ClipModel.encode_texts` return the raw
(unnormalised) embeddings, as clip2nerf uses them, in batches with an optional progress bar.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nfkit.errors import UserError

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).with_name("model_configs")
#: the small CLIP nfkit trains (``nfkit train-clip``) and a micro one for tests
NFKIT_MODELS = ("nfkit-clip-small", "nfkit-clip-micro")

_open_clip: Any = None


def open_clip_module():
    """``open_clip``, imported once, with nfkit's model configs registered. UserError with the
    install hint if it is missing."""
    global _open_clip
    if _open_clip is None:
        try:
            import open_clip
        except ImportError as exc:
            raise UserError(
                f"CLIP needs open-clip-torch (pip install open-clip-torch; SPEC §9 lists the torch / "
                f"torchvision pair that imports on a CPU): {exc}"
            ) from None
        if CONFIG_DIR not in getattr(open_clip.factory, "_MODEL_CONFIG_PATHS", []):
            open_clip.add_model_config(CONFIG_DIR)
        _open_clip = open_clip
    return _open_clip


def weights_fingerprint(model: torch.nn.Module) -> str:
    """16 hex digits of SHA-256 over every state_dict entry (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(name.encode() + b"\0" + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


@dataclass
class ClipModel:
    """A loaded CLIP: the open_clip model, its tokenizer and preprocessing, and where it came from.

    ``pretrained`` is the tag or the resolved checkpoint path (``""`` for random weights).
    """

    name: str
    pretrained: str
    model: Any
    tokenizer: Any
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fingerprint: str
    device: str = "cpu"

    @property
    def embed_dim(self) -> int:
        proj = getattr(self.model, "text_projection", None)
        if isinstance(proj, torch.Tensor):
            return int(proj.shape[1])
        with torch.no_grad():
            return int(self.encode_texts(["x"]).shape[1])

    def describe(self) -> dict[str, str]:
        return {"clip_model": self.name, "clip_pretrained": self.pretrained, "clip_fingerprint": self.fingerprint}

    @torch.no_grad()
    def encode_images(self, images: Sequence[np.ndarray], batch_size: int = 64, progress: bool = False,
                      desc: str = "CLIP images") -> np.ndarray:
        """Raw image embeddings. Shapes: images[i] (H_i, W_i, 3) float in [0, 1] -> (N, D) float32."""
        from nfkit.clip.images import prepare_batch

        out = []
        bar = _bar(len(images), progress, desc, "img")
        for a in range(0, len(images), batch_size):
            x = prepare_batch(images[a : a + batch_size], self.image_size, self.mean, self.std).to(self.device)
            out.append(self.model.encode_image(x).float().cpu().numpy())
            bar.update(len(x))
        bar.close()
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Raw text embeddings. Shapes: N strings -> (N, D) float32."""
        if not len(texts):
            raise UserError("no text to embed")
        out = []
        for a in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[a : a + batch_size])).to(self.device)
            out.append(self.model.encode_text(tokens).float().cpu().numpy())
        return np.concatenate(out)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, progress: bool, desc: str, unit: str):
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False)


def _resolve_pretrained(name: str, pretrained: str | None) -> str | None:
    """A local file path (resolved) when ``pretrained`` names one, else the tag (or None)."""
    if pretrained is None or str(pretrained).strip().lower() in ("", "none", "random"):
        return None
    p = Path(os.path.expanduser(str(pretrained)))
    if p.exists() or os.sep in str(pretrained) or p.suffix in (".pt", ".pth", ".bin", ".safetensors"):
        if not p.is_file():
            raise UserError(f"--clip-pretrained {pretrained}: no such checkpoint file")
        return str(p.resolve())
    return str(pretrained)


def load_clip(name: str, pretrained: str | None = None, device: str = "cpu", seed: int = 0) -> ClipModel:
    """Build the open_clip model ``name`` with ``pretrained`` weights (a tag, a checkpoint file,
    or None = random with ``seed``), in eval mode on ``device``.

    A typo in the name lists a few valid ones; a tag that cannot be downloaded, or a file that
    does not fit the model, is a one-line UserError.
    """
    oc = open_clip_module()
    models = oc.list_models()
    if name not in models and not name.startswith(("hf-hub:", "local-dir:")):
        near = [m for m in models if name.lower().replace("/", "-")[:5] in m.lower()][:8] or models[:8]
        raise UserError(f"--clip-model {name!r}: unknown open_clip model; e.g. {', '.join(near)} (open_clip.list_models())")
    weights = _resolve_pretrained(name, pretrained)
    if weights is not None and not Path(weights).is_file():
        tags = oc.list_pretrained_tags_by_model(name)
        if weights not in tags:
            raise UserError(
                f"--clip-pretrained {weights!r}: not a file and not a pretrained tag of {name} "
                f"({', '.join(tags) or 'it has none'})"
            )
    try:
        with torch.random.fork_rng(devices=[]), _quiet_open_clip():
            torch.manual_seed(seed)
            model = oc.create_model(name, pretrained=weights, device=device)
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        what = f"weights {weights}" if weights else "a random model"
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        hint = "" if weights is None or Path(weights).is_file() else \
            " (no network here? copy the checkpoint and pass --clip-pretrained FILE, or train one: nfkit train-clip)"
        raise UserError(f"CLIP {name} with {what} could not be loaded{hint}: {msg[:240]}") from None
    model.eval()
    fingerprint = weights_fingerprint(model)
    if weights is not None and Path(weights).is_file():
        expected = _recorded_fingerprint(Path(weights))
        if expected is not None and expected != fingerprint:
            raise UserError(f"{weights}: corrupt CLIP checkpoint (its weights do not match the fingerprint "
                            "recorded when it was written)")
    cfg = oc.get_model_preprocess_cfg(model)
    size = cfg.get("size", 224)
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    if cfg.get("resize_mode", "shortest") != "shortest":
        log.warning("%s uses resize_mode=%s; nfkit resizes the shortest side and centre-crops", name, cfg["resize_mode"])
    return ClipModel(
        name=name,
        pretrained=weights or "",
        model=model,
        tokenizer=oc.get_tokenizer(name),
        image_size=size,
        mean=tuple(float(v) for v in cfg.get("mean", oc.OPENAI_DATASET_MEAN)),
        std=tuple(float(v) for v in cfg.get("std", oc.OPENAI_DATASET_STD)),
        fingerprint=fingerprint,
        device=str(device),
    )


def _recorded_fingerprint(path: Path) -> str | None:
    """The weights fingerprint that ``nfkit train-clip`` records in its checkpoints (None for
    other files). Memory-mapped: the weights themselves are not read again."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a zip checkpoint of ours: nothing recorded
        return None
    meta = ckpt.get("nfkit") if isinstance(ckpt, dict) else None
    value = meta.get("weights_fingerprint") if isinstance(meta, dict) else None
    return str(value) if value else None


@contextlib.contextmanager
def _quiet_open_clip():
    """open_clip logs a warning through the root logger for random weights; keep it at INFO."""
    root = logging.getLogger()
    level = root.level
    if level < logging.ERROR and not log.isEnabledFor(logging.INFO):
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


__all__ = ["CONFIG_DIR", "NFKIT_MODELS", "ClipModel", "load_clip", "open_clip_module", "weights_fingerprint"]
