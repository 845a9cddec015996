"""``nfkit train-clip``: a small CLIP that knows a dataset, for machines without real CLIP weights.

No CLIP weights can be downloaded on the development machines (SPEC §9) and a random CLIP makes
zero-shot classification and text queries meaningless. This trains one of nfkit's own open_clip
model configs (``nfkit-clip-small``: open_clip's ModifiedResNet image tower, the RN50 design
with one block per stage and width 16, on 48 px images, and a 2-layer text transformer, 256-d;
``nfkit/clip/model_configs/``; on this data a ViT of about the same cost learned far slower:
15 % against 62 % held-out zero-shot accuracy after the same 120 steps) contrastively on the dataset's views
(composited on black) with captions made from each object's ``meta.json``
(:func:`nfkit.clip.captions.caption_variants`: "a 3d model of a purple airplane", "a photo of
an airplane", ...). It knows these 13 classes and a few colour words, nothing else: the seeds'
numbers need real CLIP weights (ViT-B/32: ``--clip-model ViT-B-32 --clip-pretrained openai``
where open_clip can download them, or a local checkpoint file).

Loss: CLIP's symmetric cross-entropy over the batch, with the *unique* captions of the batch as
the text side (one caption form per step: the same template, with or without the colour, for
every image of the batch): an image's target is its caption; a caption's target is spread evenly over the
images that carry it, so that two chairs of one colour are not pushed apart. Learnable logit
scale (open_clip's ``logit_scale``), AdamW with a one-cycle schedule, random horizontal flips.

The checkpoint is ``{"state_dict": ..., "nfkit": {...}}`` saved with ``torch.save``: open_clip's
own loader reads it, so ``open_clip.create_model("nfkit-clip-small", pretrained=FILE)`` and
``nfkit map-clip --clip-model nfkit-clip-small --clip-pretrained FILE`` load it like any model.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nfkit.config import Presets, StageConfig, option
from nfkit.errors import UserError
from nfkit.io.artifacts import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainClipConfig(StageConfig):
    model: str = option("nfkit-clip-small", "open_clip model config to train (nfkit-clip-small, nfkit-clip-micro, or any)")
    epochs: int = option(30, "passes; each draws views_per_object views of every object", check=lambda v: v >= 1, must=">= 1")
    views_per_object: int = option(4, "views of each object per epoch", check=lambda v: v >= 1, must=">= 1")
    batch_size: int = option(64, "images per step", check=lambda v: v >= 2, must=">= 2")
    lr: float = option(2e-3, "peak learning rate (AdamW, one-cycle)", check=lambda v: v > 0, must="> 0")
    weight_decay: float = option(0.1, "AdamW weight decay", check=lambda v: v >= 0, must=">= 0")
    split: str = option("train", "objects trained on: a split name, or all")
    flip: bool = option(True, "random horizontal flips")
    seed: int = option(0, "seed of initialisation, sampling and captions")


PRESETS: Presets[TrainClipConfig] = Presets(
    TrainClipConfig,
    cpu=TrainClipConfig(),
    tiny=TrainClipConfig(model="nfkit-clip-micro", epochs=2, views_per_object=2, batch_size=16, lr=3e-3),
)


def load_views(entries, size: int, progress: bool = False) -> np.ndarray:
    """Every view of every object, composited on black, resized and centre-cropped once.

    Shapes: -> (n_objects, V, 3, size, size) uint8 (V = the smallest view count).
    """
    from nfkit.clip.backend import _bar
    from nfkit.clip.images import resize_crop
    from nfkit.data.multiview import load_object

    out = []
    bar = _bar(len(entries), progress, "loading views", "obj")
    for e in entries:
        rgb = torch.from_numpy(load_object(e).composite()).permute(0, 3, 1, 2)
        out.append(torch.stack([resize_crop(v, size) for v in rgb]).mul(255).round().to(torch.uint8).numpy())
        bar.update(1)
    bar.close()
    v = min(len(o) for o in out)
    return np.stack([o[:v] for o in out])


def multi_positive_loss(img: torch.Tensor, txt: torch.Tensor, caption_of: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric CLIP loss with shared captions.

    Shapes: img (B, D), txt (U, D) unit rows; caption_of (B,) int64 in [0, U) -> scalar.
    """
    logits = scale * img @ txt.T  # (B, U)
    i2t = F.cross_entropy(logits, caption_of)
    members = F.one_hot(caption_of, txt.shape[0]).T.float()  # (U, B)
    t2i = -(members / members.sum(1, keepdim=True) * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return 0.5 * (i2t + t2i)


@dataclass
class TrainClipSummary:
    checkpoint: Path
    model: str
    n_objects: int
    n_views: int
    steps: int
    final_loss: float
    train_accuracy: float
    config: dict


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init_warning():
    root = logging.getLogger()
    f = _DropRandomInitWarning()
    handlers = [root, *root.handlers]
    for h in handlers:
        h.addFilter(f)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(f)


def train_clip(dataset: str | Path, out: str | Path, config: TrainClipConfig, device: str = "cpu",
               progress: bool = False) -> TrainClipSummary:
    """Train the small CLIP on ``dataset`` (see the module) and save the checkpoint ``out``."""
    from nfkit.clip.backend import _bar, open_clip_module, weights_fingerprint
    from nfkit.clip.captions import caption_variants, object_colour
    from nfkit.data.multiview import scan_dataset

    oc = open_clip_module()
    if config.model not in oc.list_models():
        raise UserError(f"--set model={config.model}: unknown open_clip model config")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; name the checkpoint file (e.g. {out / 'nfkit-clip.pt'})")
    entries = scan_dataset(Path(dataset), split=None if config.split == "all" else config.split)
    if len(entries) < 2:
        raise UserError(f"train-clip needs at least 2 objects, {dataset} has {len(entries)} in split {config.split}")
    captions = [caption_variants(e.class_name, object_colour(e.path)) for e in entries]
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(config.seed)
        # open_clip warns "No pretrained weights loaded ... initialized randomly": that is the
        # point of train-clip, so the warning is dropped here (and only here).
        with _quiet_random_init_warning():
            model = oc.create_model(config.model, pretrained=None, device=dev)
    tokenizer = oc.get_tokenizer(config.model)
    size = oc.get_model_preprocess_cfg(model)["size"]
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    cfg = oc.get_model_preprocess_cfg(model)
    mean = torch.tensor(cfg["mean"], device=dev).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], device=dev).view(1, 3, 1, 1)
    views = load_views(entries, size, progress)
    n_obj, n_v = views.shape[:2]
    per_epoch = n_obj * min(config.views_per_object, n_v)
    bs = min(config.batch_size, per_epoch)
    steps_per_epoch = max(1, per_epoch // bs)
    total = config.epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.15)
    rng = np.random.default_rng(config.seed)
    bar = _bar(total, progress, f"train-clip {config.model}", "step")
    losses, correct, seen = [], 0, 0
    model.train()
    for epoch in range(config.epochs):
        obj = np.repeat(np.arange(n_obj), min(config.views_per_object, n_v))
        view = np.concatenate([rng.permutation(n_v)[: min(config.views_per_object, n_v)] for _ in range(n_obj)])
        order = rng.permutation(len(obj))
        for s in range(steps_per_epoch):
            pick = order[s * bs : (s + 1) * bs]
            x = torch.from_numpy(views[obj[pick], view[pick]]).to(dev).float().div(255)
            if config.flip:
                flip = torch.from_numpy(rng.random(len(pick)) < 0.5).to(dev)
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            # one caption form per step (template, with or without the colour): the image
            # decides its caption, never the random choice of a template
            form = int(rng.integers(len(captions[0])))
            texts = [captions[o][form % len(captions[o])] for o in obj[pick]]
            unique = sorted(set(texts))
            caption_of = torch.tensor([unique.index(t) for t in texts], device=dev)
            img = F.normalize(model.encode_image((x - mean) / std), dim=-1)
            txt = F.normalize(model.encode_text(tokenizer(unique).to(dev)), dim=-1)
            scale = model.logit_scale.exp().clamp(max=100.0)
            loss = multi_positive_loss(img, txt, caption_of, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100.0))
            losses.append(float(loss.detach()))
            if epoch == config.epochs - 1:
                correct += int(((img @ txt.T).argmax(1) == caption_of).sum())
                seen += len(pick)
            bar.update(1)
    bar.close()
    model.eval()
    meta = {"model": config.model, "config": config.to_dict(), "dataset": str(Path(dataset).resolve()),
            "objects": n_obj, "views": n_v, "steps": total, "final_loss": float(np.mean(losses[-steps_per_epoch:])),
            "example_captions": captions[0][:4],
            # checked when the file is loaded (nfkit.clip.backend.load_clip): a damaged file is refused
            "weights_fingerprint": weights_fingerprint(model)}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".pt.tmp") as tmp:
        torch.save({"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "nfkit": meta}, tmp)
    return TrainClipSummary(out, config.model, n_obj, n_v, total, meta["final_loss"], correct / max(1, seen), config.to_dict())


__all__ = ["TrainClipConfig", "PRESETS", "load_views", "multi_positive_loss", "TrainClipSummary", "train_clip"]
