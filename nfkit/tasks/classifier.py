"""Training, applying and storing the supervised embedding classifier.

Recipe (seed 000 App. B, CVLAB-Unibo/gmnerf ``trainers/classifier.py``; the ``paper`` preset):
:class:`~nfkit.models.heads.EmbeddingClassifier` (3 blocks, 1024/512/256, dropout 0.5),
cross-entropy, AdamW max lr 1e-4 weight decay 1e-2 with a one-cycle schedule over all steps,
150 epochs, batch 256, each batch extended by its same-class mixed copies
(:func:`~nfkit.models.heads.mix_same_class`); the epoch with the best validation accuracy is
kept and is the one tested. Ties in accuracy (frequent with small validation sets, which
saturate early) go to the epoch of lower validation cross-entropy rather than, as in the
reference, to the first epoch reaching that accuracy.

The artifact (kind ``classifier``, schema v1, ``data_specs/classifier-v1.md``) stores the
state_dict, the class names, the architectures it was trained on and the fingerprint of the
encoder whose embeddings it classifies; :func:`predict` refuses embeddings of another encoder.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from nfkit.embed.store import EmbeddingSet
from nfkit.errors import ConfigError, IncompatibleError, UserError
from nfkit.io.artifacts import (
    ArtifactError,
    open_artifact,
    read_checked,
    register_kind,
    register_reader,
    write_artifact,
)
from nfkit.models.heads import PAPER_HIDDEN, EmbeddingClassifier, mix_same_class

log = logging.getLogger(__name__)

CLASSIFIER = "classifier"
CLASSIFIER_VERSION = 1
register_kind(CLASSIFIER, CLASSIFIER_VERSION)


@dataclass(frozen=True)
class ClassifierConfig:
    """Training configuration of the embedding classifier."""

    epochs: int = 150
    """Training epochs (the best one by validation accuracy is kept)."""
    batch_size: int = 256
    """Embeddings per batch (before the mixed copies are appended)."""
    lr: float = 1e-4
    """Maximum learning rate of the one-cycle schedule (AdamW)."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    hidden: tuple[int, ...] = PAPER_HIDDEN
    """Widths of the Linear -> BatchNorm -> ReLU -> Dropout blocks."""
    dropout: float = 0.5
    """Dropout probability of each block."""
    augment: bool = True
    """Append same-class feature-mixed copies to every batch (the reference's augmentation)."""
    seed: int = 0
    """Seed of initialization, batch order and augmentation."""

    def validate(self) -> ClassifierConfig:
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError(f"classifier needs epochs >= 1 and batch_size >= 2, got {self.epochs}, {self.batch_size}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(f"classifier lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"classifier hidden widths must be positive, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"classifier dropout must lie in [0, 1), got {self.dropout}")
        return self


#: ``paper``: the seeds' recipe. ``cpu``: the same network; a few hundred embeddings give only
#: a handful of batches of 256 per epoch, so batches of 64 with a 10x larger peak learning rate,
#: for 300 epochs (~1,200 steps of ~25 ms at 1024-d: ~30 s per classifier for 234 embeddings).
#: Measured on the demo's embeddings (234 training, 39 val, 39 test; `all` classifier): 40
#: epochs left it under-fitted (21 % accuracy on its own training embeddings, 18 % val, test
#: mlp / tri / hash 23 / 23 / 15 %); 300 epochs give 64 % train, 36 % val, 46 / 69 / 15 % test.
#: ``tiny``: tests.
PRESETS: dict[str, ClassifierConfig] = {
    "paper": ClassifierConfig(),
    "cpu": ClassifierConfig(epochs=300, batch_size=64, lr=1e-3),
    "tiny": ClassifierConfig(epochs=4, batch_size=32, lr=3e-3, hidden=(64, 32, 16)),
}


def classifier_config(preset: str = "cpu", **overrides) -> ClassifierConfig:
    """A preset with fields overridden (``None`` values are ignored)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown classifier preset {preset!r}; expected one of {', '.join(PRESETS)}")
    names = {f.name for f in fields(ClassifierConfig)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ConfigError(f"unknown classifier setting(s) {bad}; expected {sorted(names)}")
    cfg = replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
    return cfg.validate()


@dataclass
class TrainedClassifier:
    """A trained classifier with what it needs to be applied safely."""

    model: EmbeddingClassifier
    classes: list[str]
    encoder_fingerprint: str
    train_archs: list[str]
    config: ClassifierConfig
    best_epoch: int = -1
    val_accuracy: float = float("nan")
    history: list[dict] = field(default_factory=list)

    def class_index(self, names: np.ndarray) -> np.ndarray:
        """Class ids of names (-1 for classes the classifier does not know). (n,) -> (n,) int64."""
        lookup = {c: i for i, c in enumerate(self.classes)}
        return np.array([lookup.get(str(c), -1) for c in names], np.int64)


def _batches(n: int, batch: int, gen: torch.Generator) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    out = [perm[a : a + batch] for a in range(0, n, batch)]
    if len(out) > 1 and len(out[-1]) < 2:  # BatchNorm needs 2 samples: fold a lone last one in
        out[-2] = torch.cat([out[-2], out.pop()])
    return out


@torch.no_grad()
def _evaluate(model: EmbeddingClassifier, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean cross-entropy over the rows of known classes)."""
    model.eval()
    logits = torch.cat([model(x[a : a + 4096]) for a in range(0, len(x), 4096)])
    known = y >= 0
    loss = torch.nn.functional.cross_entropy(logits[known], y[known]) if known.any() else torch.tensor(0.0)
    return float((logits.argmax(1) == y).float().mean()), float(loss)


def train_classifier(
    train: EmbeddingSet,
    val: EmbeddingSet | None,
    config: ClassifierConfig,
    classes: list[str] | None = None,
    device: str = "cpu",
    progress: bool = False,
    desc: str = "classifier",
) -> TrainedClassifier:
    """Train on ``train`` (every row), pick the epoch of best accuracy on ``val``.

    Without validation rows the last epoch is kept (``best_epoch`` says which was used).
    ``classes`` fixes the label order (default: the sorted classes of ``train``).
    """
    config.validate()
    if len(train) < 2:
        raise UserError(f"{desc}: needs at least 2 training embeddings, got {len(train)}")
    classes = sorted(train.classes()) if classes is None else list(classes)
    if len(classes) < 2:
        raise UserError(f"{desc}: the training embeddings hold one class only ({classes[0]})")
    dev = torch.device(device)
    # seed init and dropout without touching the caller's random state
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(config.seed)
        return _train(train, val, config, classes, dev, progress, desc)


def _train(train, val, config, classes, device, progress, desc) -> TrainedClassifier:
    best_state = None
    model = EmbeddingClassifier(train.dim, len(classes), config.hidden, config.dropout).to(device)
    gen = torch.Generator().manual_seed(config.seed)
    lookup = {c: i for i, c in enumerate(classes)}
    x = torch.as_tensor(train.embedding, device=device)
    y = torch.as_tensor([lookup[c] for c in train.class_name], device=device)
    has_val = val is not None and len(val) > 0
    if has_val:
        xv = torch.as_tensor(val.embedding, device=device)
        yv = torch.as_tensor([lookup.get(c, -1) for c in val.class_name], device=device)
    steps_per_epoch = len(_batches(len(x), config.batch_size, torch.Generator().manual_seed(0)))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)
    loss_fn = torch.nn.CrossEntropyLoss()
    best, best_loss = (-1.0, -1), float("inf")
    history: list[dict] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, unit="epoch", desc=desc, leave=False)
    try:
        for epoch in range(config.epochs):
            model.train()
            total = 0.0
            for rows in _batches(len(x), config.batch_size, gen):
                rows = rows.to(device)
                xb, yb = x[rows], y[rows]
                if config.augment:
                    xb = torch.cat([xb, mix_same_class(xb, yb, x, y, generator=gen)])
                    yb = torch.cat([yb, yb])
                loss = loss_fn(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(rows)
            row = {"epoch": epoch, "loss": total / len(x)}
            if has_val:
                row["val_accuracy"], row["val_loss"] = _evaluate(model, xv, yv)
                if (row["val_accuracy"], -row["val_loss"]) > (best[0], -best_loss):
                    best, best_loss = (row["val_accuracy"], epoch), row["val_loss"]
                    best_state = copy.deepcopy(model.state_dict())
            history.append(row)
            if bar is not None:
                bar.set_postfix(loss=f"{row['loss']:.3f}", val=f"{row.get('val_accuracy', float('nan')):.3f}")
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if has_val and best_state is not None:
        model.load_state_dict(best_state)
    else:
        best = (float("nan"), config.epochs - 1)
    model.eval()
    return TrainedClassifier(
        model=model,
        classes=classes,
        encoder_fingerprint=train.encoder_fingerprint,
        train_archs=train.archs(),
        config=config,
        best_epoch=best[1],
        val_accuracy=best[0],
        history=history,
    )


def check_encoder(clf: TrainedClassifier, es: EmbeddingSet, what: str = "embeddings") -> None:
    if es.encoder_fingerprint != clf.encoder_fingerprint:
        raise IncompatibleError(
            f"{what} come from encoder {es.encoder_fingerprint or '?'} but the classifier was trained on "
            f"embeddings of encoder {clf.encoder_fingerprint or '?'}; embed them with that encoder"
        )


@torch.no_grad()
def predict(clf: TrainedClassifier, es: EmbeddingSet, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Class ids and softmax probabilities. Shapes: (n, dim) embeddings -> (n,) int64, (n, C) float32."""
    check_encoder(clf, es)
    if es.dim != clf.model.in_dim:
        raise IncompatibleError(f"embeddings are {es.dim}-d, the classifier expects {clf.model.in_dim}-d")
    clf.model.eval()
    dev = next(clf.model.parameters()).device
    x = torch.as_tensor(es.embedding, device=dev)
    probs = torch.cat([torch.softmax(clf.model(x[a : a + batch]), 1) for a in range(0, len(x), batch)]) if len(x) else torch.zeros(0, len(clf.classes))
    probs_np = probs.cpu().numpy().astype(np.float32)
    return probs_np.argmax(1).astype(np.int64), probs_np


# --------------------------------------------------------------------------- artifact


def save_classifier(path: str | Path, clf: TrainedClassifier, extra_config: dict | None = None) -> Path:
    """Write the classifier artifact atomically (schema: ``data_specs/classifier-v1.md``)."""
    cfg = {"classifier": asdict(clf.config), **(extra_config or {})}
    with write_artifact(path, CLASSIFIER, CLASSIFIER_VERSION, cfg, {"encoder": clf.encoder_fingerprint}) as f:
        f.attrs["classes"] = json.dumps(clf.classes)
        f.attrs["train_archs"] = json.dumps(clf.train_archs)
        f.attrs["encoder_fingerprint"] = clf.encoder_fingerprint
        f.attrs["in_dim"] = clf.model.in_dim
        f.attrs["hidden"] = json.dumps(list(clf.model.hidden))
        f.attrs["dropout"] = clf.model.dropout
        f.attrs["best_epoch"] = clf.best_epoch
        f.attrs["val_accuracy"] = clf.val_accuracy
        g = f.create_group("state")
        for name, t in clf.model.state_dict().items():
            g.create_dataset(name, data=t.detach().cpu().numpy())
    return Path(path)


def load_classifier(path: str | Path, device: str = "cpu") -> TrainedClassifier:
    """Read a classifier artifact; a malformed one raises :class:`ArtifactError` naming the file."""
    path = Path(path)
    with open_artifact(path, CLASSIFIER) as f:
        try:
            classes = json.loads(f.attrs["classes"])
            hidden = tuple(json.loads(f.attrs["hidden"]))
            in_dim, dropout = int(f.attrs["in_dim"]), float(f.attrs["dropout"])
            state = {k: torch.from_numpy(np.asarray(read_checked(f["state"][k], path))) for k in f["state"]}
            cfg_all = json.loads(f.attrs["nfkit_config"]).get("classifier", {})
            enc = str(f.attrs["encoder_fingerprint"])
            archs = json.loads(f.attrs["train_archs"])
            best_epoch, val_acc = int(f.attrs["best_epoch"]), float(f.attrs["val_accuracy"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{path}: malformed classifier artifact ({exc})") from None
    model = EmbeddingClassifier(in_dim, len(classes), hidden, dropout)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:  # TypeError: a damaged (undecodable) dataset name
        raise ArtifactError(f"{path}: classifier weights do not match its header ({str(exc).splitlines()[0]})") from None
    cfg_all["hidden"] = tuple(cfg_all.get("hidden", hidden))
    known = {f.name for f in fields(ClassifierConfig)}
    config = ClassifierConfig(**{k: v for k, v in cfg_all.items() if k in known})
    return TrainedClassifier(model.to(device).eval(), classes, enc, archs, config, best_epoch, val_acc)


register_reader(CLASSIFIER, CLASSIFIER_VERSION, load_classifier)

__all__ = [
    "CLASSIFIER",
    "CLASSIFIER_VERSION",
    "ClassifierConfig",
    "PRESETS",
    "classifier_config",
    "TrainedClassifier",
    "train_classifier",
    "predict",
    "check_encoder",
    "save_classifier",
    "load_classifier",
]
