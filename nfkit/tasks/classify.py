"""The ``classify`` stage: classifiers per training set, the transfer matrix, predictions.

:func:`run_classify` trains one classifier per *training set* (a set of architectures, e.g.
``all`` = every architecture with train-split embeddings, or ``mlp``, or ``mlp+tri``) on the
``train`` split, picks its epoch on the ``val`` split of the same architectures, and tests it on
the ``test`` split of **every** architecture present, unseen ones included. The result is the
transfer matrix of seed 000 Tables 2 and 4: rows = training set, columns = test architecture,
cells = accuracy (%). Outputs in ``out/``:

- ``classifier-<set>.h5``   one classifier artifact per training set
- ``classify.json``          matrix, per-architecture confusion matrices, best epochs, config
- ``transfer.md``            the matrix as a Markdown table

:func:`predict_nerfs` classifies NeRF artifacts from their weights: NeRF records -> the
encoder (``nfkit.encoder.embed``) -> embeddings -> the classifier.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nfkit.embed.store import EmbeddingSet, load_embeddings
from nfkit.errors import UserError
from nfkit.eval.metrics import accuracy, confusion_matrix
from nfkit.io.artifacts import atomic_path
from nfkit.io.lock import locks_output
from nfkit.tasks.classifier import (
    ClassifierConfig,
    TrainedClassifier,
    check_encoder,
    load_classifier,
    predict,
    save_classifier,
    train_classifier,
)

log = logging.getLogger(__name__)


def parse_train_sets(values: Sequence[str] | None, available: Sequence[str]) -> dict[str, list[str]]:
    """``--train-arch`` values -> {set name: architectures}.

    ``all`` = every available architecture; ``a+b`` or ``a,b`` = a set of several; names match
    case-insensitively. Default (no values): ``all`` and each available architecture alone,
    which gives the full transfer matrix. Unknown names raise :class:`UserError` listing the
    valid ones.
    """
    available = sorted(available)
    if not available:
        raise UserError("no train-split embeddings: classify needs embeddings with split 'train'")
    by_lower = {a.lower(): a for a in available}
    if not values:
        values = ["all", *available] if len(available) > 1 else list(available)
    sets: dict[str, list[str]] = {}
    for v in values:
        parts = [p.strip().lower() for p in re.split(r"[+,]", v) if p.strip()]
        if parts == ["all"]:
            sets["all"] = list(available)
            continue
        bad = [p for p in parts if p not in by_lower]
        if bad or not parts:
            raise UserError(
                f"--train-arch {v!r}: no train-split embeddings of {', '.join(bad) or 'that'}; "
                f"expected all or one of {', '.join(available)} (join several with +)"
            )
        archs = sorted({by_lower[p] for p in parts})
        sets["+".join(archs)] = archs
    return sets


@dataclass
class ClassifyResult:
    """Shapes: ``matrix`` (n_sets, n_test_archs) accuracy in [0, 1] (NaN: no test rows)."""

    train_sets: dict[str, list[str]]
    test_archs: list[str]
    matrix: np.ndarray
    classes: list[str]
    confusion: dict[str, dict[str, list[list[int]]]]
    best_epoch: dict[str, int]
    val_accuracy: dict[str, float]
    n_test: dict[str, int]
    classifiers: dict[str, str]
    config: dict

    def to_json(self) -> dict:
        return {
            "train_sets": self.train_sets,
            "test_archs": self.test_archs,
            "accuracy": {
                s: {a: _num(self.matrix[i, j]) for j, a in enumerate(self.test_archs)}
                for i, s in enumerate(self.train_sets)
            },
            "classes": self.classes,
            "confusion": self.confusion,
            "best_epoch": self.best_epoch,
            "val_accuracy": {k: _num(v) for k, v in self.val_accuracy.items()},
            "n_test": self.n_test,
            "classifiers": self.classifiers,
            "config": self.config,
        }


def _num(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 6)


def transfer_markdown(result: ClassifyResult | dict, title: str = "") -> str:
    """The transfer matrix as a Markdown table (accuracy %; rows training set, columns test arch)."""
    data = result.to_json() if isinstance(result, ClassifyResult) else result
    archs = data["test_archs"]
    lines = [title, ""] if title else []
    lines += [
        "| classifier trained on | " + " | ".join(archs) + " |",
        "|---|" + "---:|" * len(archs),
    ]
    for s, row in data["accuracy"].items():
        cells = ["n/a" if row[a] is None else f"{100 * row[a]:.1f}" for a in archs]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    n = data.get("n_test", {})
    if n:
        lines += ["", "Test embeddings per architecture: " + ", ".join(f"{a} {n.get(a, 0)}" for a in archs)
                  + f"; chance = 1/{len(data['classes'])} = {100 / len(data['classes']):.1f} %."]
    return "\n".join(lines) + "\n"


def evaluate(clf: TrainedClassifier, test: EmbeddingSet) -> tuple[float, np.ndarray]:
    """Accuracy and confusion matrix (rows true class, columns predicted) of ``test``.

    Test rows of classes the classifier does not know count as errors and are left out of the
    confusion matrix.
    """
    pred, _ = predict(clf, test)
    target = clf.class_index(test.class_name)
    acc = accuracy(pred, target)
    known = target >= 0
    return acc, confusion_matrix(pred[known], target[known], len(clf.classes))


@locks_output()
def run_classify(
    embeddings: str | Path | Sequence[str | Path],
    out: str | Path,
    config: ClassifierConfig,
    train_archs: Sequence[str] | None = None,
    device: str = "cpu",
    progress: bool = False,
    extra_config: dict | None = None,
) -> ClassifyResult:
    """Train a classifier per training set and test each on every test architecture (see module)."""
    es = load_embeddings(embeddings)
    train_all = es.select(split="train")
    val_all = es.select(split="val")
    test_all = es.select(split="test")
    if not len(test_all):
        raise UserError("no test-split embeddings: classify tests on split 'test'")
    sets = parse_train_sets(train_archs, train_all.archs())
    classes = train_all.classes()
    test_archs = test_all.archs()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    matrix = np.full((len(sets), len(test_archs)), np.nan)
    confusion: dict[str, dict[str, list[list[int]]]] = {}
    best_epoch, val_acc, paths = {}, {}, {}
    for i, (name, archs) in enumerate(sets.items()):
        clf = train_classifier(
            train_all.select(arch=archs), val_all.select(arch=archs), config, classes=classes,
            device=device, progress=progress, desc=f"classifier {name}",
        )
        path = save_classifier(out / f"classifier-{name}.h5", clf, extra_config)
        paths[name], best_epoch[name], val_acc[name] = str(path), clf.best_epoch, clf.val_accuracy
        confusion[name] = {}
        for j, arch in enumerate(test_archs):
            acc, conf = evaluate(clf, test_all.select(arch=arch))
            matrix[i, j] = acc
            confusion[name][arch] = conf.tolist()
        log.info("classifier %s: %s", name, dict(zip(test_archs, np.round(matrix[i], 3).tolist(), strict=True)))
    result = ClassifyResult(
        train_sets=sets,
        test_archs=test_archs,
        matrix=matrix,
        classes=classes,
        confusion=confusion,
        best_epoch=best_epoch,
        val_accuracy=val_acc,
        n_test={a: len(test_all.select(arch=a)) for a in test_archs},
        classifiers=paths,
        config={"classifier": asdict(config), "encoder_fingerprint": es.encoder_fingerprint, **(extra_config or {})},
    )
    write_text(out / "classify.json", json.dumps(result.to_json(), indent=2))
    write_text(out / "transfer.md", transfer_markdown(result, "## Classification accuracy (%): transfer matrix"))
    return result


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


# --------------------------------------------------------------------------- --predict


@dataclass
class Prediction:
    arch: str
    key: str
    class_name: str
    probability: float
    true_class: str


def embed_records_with(records: Sequence, encoder: str | Path, device: str = "cpu", progress: bool = False) -> EmbeddingSet:
    """NeRF records -> embeddings through the encoder artifact at ``encoder``
    (``nfkit.encoder.embed.load_encoder`` / ``embed_records``)."""
    try:
        from nfkit.encoder.embed import embed_records, load_encoder
    except ImportError as exc:  # the encoder stage is not part of this build
        raise UserError(f"embedding NeRFs needs the encoder stage (nfkit.encoder.embed): {exc}") from None
    if not Path(encoder).is_file():
        raise UserError(f"{encoder}: no such encoder checkpoint (run `nfkit pretrain-encoder`, or give --encoder)")
    return embed_records(load_encoder(Path(encoder), device), list(records), progress=progress)


def embed_nerfs(nerfs: str | Path | Sequence[str | Path], encoder: str | Path, device: str = "cpu", progress: bool = False) -> EmbeddingSet:
    """NeRF artifacts (files or folders) -> embeddings through the encoder."""
    from nfkit.nerf.store import iter_nerfs

    records = list(iter_nerfs(nerfs))
    if not records:
        raise UserError(f"no NeRFs found in {nerfs}")
    return embed_records_with(records, encoder, device=device, progress=progress)


def predict_nerfs(
    nerfs: str | Path | Sequence[str | Path],
    classifier: str | Path,
    encoder: str | Path,
    device: str = "cpu",
    progress: bool = False,
) -> list[Prediction]:
    """Classify NeRF artifacts straight from their weights (nothing is rendered)."""
    clf = load_classifier(classifier, device=device)
    es = embed_nerfs(nerfs, encoder, device=device, progress=progress)
    check_encoder(clf, es, what=f"embeddings of encoder {encoder}")
    pred, probs = predict(clf, es)
    return [
        Prediction(str(a), str(k), clf.classes[p], float(probs[i, p]), str(c))
        for i, (a, k, p, c) in enumerate(zip(es.arch, es.keys, pred, es.class_name, strict=True))
    ]


__all__ = [
    "parse_train_sets",
    "ClassifyResult",
    "transfer_markdown",
    "evaluate",
    "run_classify",
    "Prediction",
    "embed_records_with",
    "embed_nerfs",
    "predict_nerfs",
]
