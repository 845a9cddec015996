"""Training and storing nerf2clip / clip2nerf (seed 002 §3; seed 004 for SigLIP).

Pairs (:func:`pair_views`): every NeRF embedding is matched to the CLIP embeddings of its
object's views in a :class:`~nfkit.clip.cache.ClipCache` (ground-truth views by
``class/object_id``; rendered views by architecture and object).

- **nerf2clip**: NeRF embedding -> the *mean* CLIP embedding of its views.
- **clip2nerf**: every view's CLIP embedding -> its NeRF's embedding.

Loss ``1 − cos`` (the reference's CosineEmbeddingLoss) or SigLIP (seed 004; learnable t, b).
AdamW with a one-cycle schedule; the epoch of lowest validation loss (the ``val`` split) is
kept, else the last. The ``paper`` preset is the seeds' recipe (batch 64, wd 1e-2; clip2nerf
150 epochs lr 1e-5, nerf2clip 100 epochs lr 1e-3); ``cpu`` trains in a minute or two on the
demo data; ``tiny`` is for tests.

**Control.** With ``control=true`` a second pair of networks is trained with the same recipe on
*shuffled* pairs (each object's views matched with another object's NeRF): what a mapping
reaches without any correspondence. Retrieval and zero-shot report it next to the real maps.

The artifact (kind ``clip-maps``, schema v1, ``data_specs/clip-maps-v1.md``) holds both
networks (and the control), the CLIP model's name, tag/file and weight fingerprint, and the
encoder fingerprint of the embeddings; :class:`ClipMaps` refuses CLIP embeddings of other
weights and NeRF embeddings of another encoder (:class:`~nfkit.errors.IncompatibleError`).
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nfkit.clip.cache import ClipCache, check_same_clip
from nfkit.config import Presets, StageConfig, group, option
from nfkit.embed.store import EmbeddingSet
from nfkit.errors import IncompatibleError, UserError
from nfkit.io.artifacts import (
    ArtifactError,
    open_artifact,
    read_checked,
    register_reader,
    write_artifact,
)
from nfkit.losses import SigLipLoss, cosine_loss
from nfkit.models.clip_maps import MappingNet, apply

log = logging.getLogger(__name__)

CLIP_MAPS = "clip-maps"
CLIP_MAPS_VERSION = 1
NETS = ("nerf2clip", "clip2nerf")


@dataclass(frozen=True)
class MapTrainConfig(StageConfig):
    epochs: int = option(100, "training epochs", check=lambda v: v >= 1, must=">= 1")
    lr: float = option(1e-3, "peak learning rate (AdamW, one-cycle)", check=lambda v: v > 0, must="> 0")
    batch_size: int = option(64, "pairs per batch", check=lambda v: v >= 2, must=">= 2")
    weight_decay: float = option(1e-2, "AdamW weight decay", check=lambda v: v >= 0, must=">= 0")
    loss: str = option("cosine", "1 - cos (seed 002) or siglip (seed 004)", choices=("cosine", "siglip"))


@dataclass(frozen=True)
class MapClipConfig(StageConfig):
    nerf2clip: MapTrainConfig = group(MapTrainConfig, "nerf2clip training (target: mean CLIP embedding of the views)")
    clip2nerf: MapTrainConfig = group(MapTrainConfig, "clip2nerf training (each view -> its NeRF's embedding)")
    hidden: tuple[int, ...] = option((768,), "hidden widths of both networks (seed 002: 768)",
                                     check=lambda v: all(h >= 1 for h in v), must="positive")
    views: str = option("gt", "views whose CLIP embeddings are paired: ground truth or rendered from the NeRFs",
                        choices=("gt", "rendered"))
    n_views: int = option(36, "views per object (evenly spaced frames)", check=lambda v: v >= 1, must=">= 1")
    control: bool = option(True, "also train a control pair on shuffled object pairs")
    seed: int = option(0, "seed of initialisation, batch order and the control's shuffle")


PRESETS: Presets[MapClipConfig] = Presets(
    MapClipConfig,
    paper=MapClipConfig(nerf2clip=MapTrainConfig(epochs=100, lr=1e-3), clip2nerf=MapTrainConfig(epochs=150, lr=1e-5)),
    cpu=MapClipConfig(nerf2clip=MapTrainConfig(epochs=150, lr=1e-3, batch_size=32),
                      clip2nerf=MapTrainConfig(epochs=30, lr=3e-4)),
    tiny=MapClipConfig(nerf2clip=MapTrainConfig(epochs=20, lr=3e-3, batch_size=8),
                       clip2nerf=MapTrainConfig(epochs=10, lr=3e-3, batch_size=16), hidden=(32,), n_views=4),
)


# --------------------------------------------------------------------------- pairs


@dataclass
class Pairs:
    """Shapes: ``nerf`` (n, E) NeRF embeddings; ``views`` (n, V, D) CLIP view embeddings of
    each one's object; ``split``/``keys``/``classes``/``archs`` (n,)."""

    nerf: np.ndarray
    views: np.ndarray
    split: np.ndarray
    keys: np.ndarray
    classes: np.ndarray
    archs: np.ndarray

    def __len__(self) -> int:
        return int(self.nerf.shape[0])

    def take(self, mask) -> Pairs:
        return Pairs(*(getattr(self, f)[mask] for f in ("nerf", "views", "split", "keys", "classes", "archs")))


def pair_views(es: EmbeddingSet, cache: ClipCache, missing_ok: bool = True) -> Pairs:
    """Match embedding rows to cache rows (see the module); rows without views are dropped
    (logged), and none matching is a UserError."""
    where = cache.row_of()
    gt = cache.views == "gt"
    rows, keep = [], []
    for i, (a, k) in enumerate(zip(es.arch, es.keys, strict=True)):
        r = where.get(("" if gt else str(a), str(k)))
        if r is not None:
            rows.append(r)
            keep.append(i)
    if not keep:
        raise UserError(
            f"no embedding has views in the CLIP cache ({cache.views} views of {len(cache)} objects); "
            "are the embeddings and the dataset of the same objects?"
        )
    if len(keep) < len(es):
        if not missing_ok:
            raise UserError(f"{len(es) - len(keep)} embeddings have no views in the CLIP cache")
        log.warning("%d of %d embeddings have no %s views in the CLIP cache; left out", len(es) - len(keep), len(es), cache.views)
    sub = es.take(keep)
    return Pairs(sub.embedding.astype(np.float32), cache.embedding[rows], sub.split.astype(str), sub.keys.astype(str),
                 sub.class_name.astype(str), sub.arch.astype(str))


def shuffled(pairs: Pairs, seed: int) -> Pairs:
    """The control: every object's views given to another object (a random derangement of the
    unique objects; all architectures of one object move together)."""
    keys = np.unique(pairs.keys)
    if len(keys) < 2:
        raise UserError("the shuffled control needs at least 2 objects")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(keys))
    while np.any(perm == np.arange(len(keys))):
        perm = rng.permutation(len(keys))
    first = {k: np.flatnonzero(pairs.keys == k)[0] for k in keys}
    source = {k: first[keys[perm[i]]] for i, k in enumerate(keys)}
    views = np.stack([pairs.views[source[k]] for k in pairs.keys])
    return Pairs(pairs.nerf, views, pairs.split, pairs.keys, pairs.classes, pairs.archs)


# --------------------------------------------------------------------------- training


def _loss_fn(cfg: MapTrainConfig, device):
    if cfg.loss == "siglip":
        siglip = SigLipLoss().to(device)
        return siglip, list(siglip.parameters())
    return cosine_loss, []


def train_map(x: np.ndarray, y: np.ndarray, xv: np.ndarray | None, yv: np.ndarray | None, cfg: MapTrainConfig,
              hidden, seed: int = 0, device: str = "cpu", progress: bool = False, desc: str = "map") -> tuple[MappingNet, dict]:
    """Train ``MappingNet(x -> y)``. Shapes: x (n, I), y (n, O); xv, yv validation pairs or None.
    Returns the net (best validation epoch, else the last) and {best_epoch, history}."""
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        net = MappingNet(x.shape[1], y.shape[1], hidden).to(dev)
        loss_fn, extra = _loss_fn(cfg, dev)
    X, Y = torch.as_tensor(x, device=dev), torch.as_tensor(y, device=dev)
    has_val = xv is not None and len(xv) > 0
    if has_val:
        XV, YV = torch.as_tensor(xv, device=dev), torch.as_tensor(yv, device=dev)
    gen = torch.Generator().manual_seed(seed)
    bs = min(cfg.batch_size, len(X))
    steps = -(-len(X) // bs)
    opt = torch.optim.AdamW([*net.parameters(), *extra], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps)
    best_state, best, history = None, (float("inf"), cfg.epochs - 1), []
    from nfkit.clip.backend import _bar

    bar = _bar(cfg.epochs, progress, desc, "epoch")
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.randperm(len(X), generator=gen).to(dev)
        total = 0.0
        for s in range(steps):
            rows = order[s * bs : (s + 1) * bs]
            if len(rows) < 2 and cfg.loss == "siglip":
                continue
            loss = loss_fn(net(X[rows]), Y[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(rows)
        row = {"epoch": epoch, "loss": total / len(X)}
        if has_val:
            net.eval()
            with torch.no_grad():
                row["val_cosine"] = float(torch.nn.functional.cosine_similarity(net(XV), YV, dim=-1).mean())
            if -row["val_cosine"] < best[0]:
                best, best_state = (-row["val_cosine"], epoch), copy.deepcopy(net.state_dict())
        history.append(row)
        bar.update(1)
    bar.close()
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return net, {"best_epoch": best[1], "history": history}


def _view_pairs(p: Pairs) -> tuple[np.ndarray, np.ndarray]:
    """clip2nerf pairs: every view -> its NeRF. Shapes: (n·V, D), (n·V, E)."""
    v = p.views.shape[1]
    return p.views.reshape(-1, p.views.shape[2]), np.repeat(p.nerf, v, axis=0)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean()) if len(a) else float("nan")


def train_pair(p: Pairs, cfg: MapClipConfig, device: str = "cpu", progress: bool = False, tag: str = "") -> dict:
    """Both networks on the train split of ``p`` (val split for the epoch). Returns
    {nerf2clip: net, clip2nerf: net, info: {...}, metrics: test cosines}."""
    tr, va, te = (p.take(p.split == s) for s in ("train", "val", "test"))
    if len(tr) < 2:
        raise UserError(f"map-clip needs at least 2 train-split embeddings with views, got {len(tr)}")
    n2c, n2c_info = train_map(tr.nerf, tr.views.mean(1), va.nerf, va.views.mean(1) if len(va) else None,
                              cfg.nerf2clip, cfg.hidden, cfg.seed, device, progress, f"{tag}nerf2clip")
    (xc, yc), (xcv, ycv) = _view_pairs(tr), _view_pairs(va)
    c2n, c2n_info = train_map(xc, yc, xcv, ycv, cfg.clip2nerf, cfg.hidden, cfg.seed + 1, device, progress, f"{tag}clip2nerf")
    metrics = {}
    for split, part in (("train", tr), ("val", va), ("test", te)):
        if len(part):
            xs, ys = _view_pairs(part)
            metrics[split] = {
                "nerf2clip_cosine": mean_cosine(apply(n2c, part.nerf), part.views.mean(1)),
                "clip2nerf_cosine": mean_cosine(apply(c2n, xs), ys),
                "n": int(len(part)),
            }
    return {"nerf2clip": n2c, "clip2nerf": c2n, "metrics": metrics,
            "info": {"nerf2clip": {"best_epoch": n2c_info["best_epoch"]}, "clip2nerf": {"best_epoch": c2n_info["best_epoch"]}}}


# --------------------------------------------------------------------------- artifact


@dataclass
class ClipMaps:
    """Loaded mapping networks with what they map between."""

    nerf2clip: MappingNet
    clip2nerf: MappingNet
    clip_model: str
    clip_pretrained: str
    clip_fingerprint: str
    encoder_fingerprint: str
    views: str
    metrics: dict = field(default_factory=dict)
    control: dict[str, MappingNet] | None = None
    config: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def embed_dim(self) -> int:
        return self.nerf2clip.in_dim

    @property
    def clip_dim(self) -> int:
        return self.nerf2clip.out_dim

    def check_clip(self, fingerprint: str, what: str = "the query") -> None:
        check_same_clip(fingerprint, self.clip_fingerprint, f"{what}", f"the CLIP maps {self.path or ''}".rstrip())

    def check_embeddings(self, es: EmbeddingSet, what: str = "the embeddings") -> None:
        if es.encoder_fingerprint != self.encoder_fingerprint:
            raise IncompatibleError(
                f"{what} come from encoder {es.encoder_fingerprint or '?'}, the CLIP maps were trained on encoder "
                f"{self.encoder_fingerprint or '?'}; rerun map-clip on these embeddings"
            )
        if es.dim != self.embed_dim:
            raise IncompatibleError(f"{what} are {es.dim}-d, the CLIP maps expect {self.embed_dim}-d")

    def net(self, name: str, control: bool = False) -> MappingNet:
        if control:
            if not self.control:
                raise UserError(f"{self.path}: holds no shuffled control (map-clip --set control=true)")
            return self.control[name]
        return getattr(self, name)


def _write_net(g, net: MappingNet) -> None:
    for k, v in net.state_dict().items():
        g.create_dataset(k, data=v.cpu().numpy())
    g.attrs.update(in_dim=net.in_dim, out_dim=net.out_dim, hidden=json.dumps(list(net.hidden)))


def _read_net(g, path: Path) -> MappingNet:
    net = MappingNet(int(g.attrs["in_dim"]), int(g.attrs["out_dim"]), json.loads(g.attrs["hidden"]))
    try:
        net.load_state_dict({k: torch.from_numpy(np.asarray(read_checked(g[k], path))) for k in net.state_dict()})
    except (KeyError, RuntimeError) as exc:
        raise ArtifactError(f"{path}: malformed mapping network ({exc.__class__.__name__})") from None
    return net.eval()


def save_maps(path: str | Path, trained: dict, control: dict | None, clip: dict[str, str], encoder_fingerprint: str,
              views: str, config: dict, inputs: dict[str, str] | None = None) -> Path:
    """Write the artifact (``clip``: clip_model, clip_pretrained, clip_fingerprint)."""
    metrics = {"maps": trained["metrics"], "info": trained["info"]}
    if control is not None:
        metrics["control"] = control["metrics"]
    with write_artifact(path, CLIP_MAPS, CLIP_MAPS_VERSION, config, inputs) as f:
        for name in NETS:
            _write_net(f.create_group(name), trained[name])
            if control is not None:
                _write_net(f.require_group("control").create_group(name), control[name])
        f.attrs.update(clip_model=clip["clip_model"], clip_pretrained=clip["clip_pretrained"],
                       clip_fingerprint=clip["clip_fingerprint"], encoder_fingerprint=encoder_fingerprint,
                       views=views, metrics=json.dumps(metrics), count=2)
    return Path(path)


def load_maps(path: str | Path, device: str = "cpu") -> ClipMaps:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no CLIP maps (run `nfkit map-clip`, or give --clip-maps)")
    with open_artifact(path, CLIP_MAPS) as f:
        try:
            nets = {n: _read_net(f[n], path).to(device) for n in NETS}
            control = {n: _read_net(f["control"][n], path).to(device) for n in NETS} if "control" in f else None
            a = f.attrs
            return ClipMaps(nets["nerf2clip"], nets["clip2nerf"], str(a["clip_model"]), str(a["clip_pretrained"]),
                            str(a["clip_fingerprint"]), str(a["encoder_fingerprint"]), str(a["views"]),
                            json.loads(a["metrics"]), control, json.loads(a["nfkit_config"]), path)
        except KeyError as exc:
            raise ArtifactError(f"{path}: malformed CLIP maps (missing {exc})") from None


register_reader(CLIP_MAPS, CLIP_MAPS_VERSION, load_maps)


def clip_of_maps(maps: ClipMaps, name: str | None = None, pretrained: str | None = None, device: str = "cpu"):
    """The CLIP model the maps were trained with (its recorded name and tag/file), or the one
    named; IncompatibleError when its weights are not the maps' CLIP."""
    from nfkit.clip.backend import load_clip

    clip = load_clip(name or maps.clip_model, pretrained if pretrained is not None else (maps.clip_pretrained or None),
                     device=device)
    maps.check_clip(clip.fingerprint, f"CLIP {clip.name} ({clip.pretrained or 'random weights'})")
    return clip


__all__ = [
    "CLIP_MAPS",
    "CLIP_MAPS_VERSION",
    "MapTrainConfig",
    "MapClipConfig",
    "PRESETS",
    "Pairs",
    "pair_views",
    "shuffled",
    "train_map",
    "train_pair",
    "mean_cosine",
    "ClipMaps",
    "save_maps",
    "load_maps",
    "clip_of_maps",
]
