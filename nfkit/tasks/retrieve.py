"""The ``retrieve`` stage: NeRF -> NeRF retrieval metrics and queries.

Both evaluations use the embeddings of one split (default ``test``), exact k-NN
(:mod:`nfkit.eval.search`) and the metrics of :mod:`nfkit.eval.metrics`.

**Instance level across architectures** (seed 000 Table 6; gmnerf ``retrieval_utils.py``).
Relevant = the same object (``class/object_id`` key) in another architecture.

- ``Q/G`` for every ordered pair of architectures Q ≠ G: queries = Q's rows, gallery = G's rows;
  recall@k = fraction of queries whose k nearest hold their object.
- ``ALL/ALL`` (the column the paper reports and the reference code cannot compute): queries =
  every row of every architecture, gallery = every row except the query itself, so the query's
  own architecture (other objects) competes with the other architectures; a hit = the same
  object in any other architecture among the k nearest. This is what makes ALL/ALL ≈ 0 for an
  encoder whose embeddings cluster by architecture (L_R in the paper).

Queries whose object exists in no gallery architecture cannot hit; they are left out of the
recall and counted (``no_match``).

**Class level** (seed 003 Table V; nf2vec ``retrieval.py``), per architecture and for ALL: the
gallery = the split's rows (of that architecture / of all), each row a query with itself
excluded, relevant = the same class. Reported: ``class hit rate@k`` (a query succeeds if any of
its k nearest has its class: the figure nf2vec's code computes and seed 003 calls mAP@k), the
true ``mAP@k`` and ``precision@k``. Queries are all counted here, as nf2vec does.

Distances: ``auto`` = what each reference uses (cosine for instance retrieval, Euclidean for
the class level), or ``cosine`` / ``l2`` for both.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfkit.embed.store import EmbeddingSet, load_embeddings
from nfkit.errors import UserError
from nfkit.eval.metrics import retrieval_scores
from nfkit.eval.search import ExactIndex, check_metric
from nfkit.io.lock import locks_output
from nfkit.tasks.classify import write_text

log = logging.getLogger(__name__)

DEFAULT_KS = (1, 5, 10)


def resolve_metrics(metric: str) -> tuple[str, str]:
    """``auto`` -> (cosine, l2) for (instance, class) retrieval; otherwise that metric for both."""
    m = str(metric).strip().lower()
    if m == "auto":
        return "cosine", "l2"
    try:
        m = check_metric(m)
    except ValueError:
        raise UserError(f"--metric {metric!r}: expected auto, cosine or l2") from None
    return m, m


def _scores(index: ExactIndex, queries: EmbeddingSet, q_labels, g_labels, ks, exclude=None, unmatched="miss"):
    res = index.search(queries.embedding, max(ks), exclude=exclude)
    return retrieval_scores(res.index, q_labels, g_labels, ks, exclude=exclude, unmatched=unmatched)


def instance_retrieval(
    es: EmbeddingSet, ks: Sequence[int] = DEFAULT_KS, metric: str = "cosine", device: str = "cpu", progress: bool = False
) -> dict[str, dict[str, float]]:
    """{"ALL/ALL" | "Q/G": scores} with ``hit@k`` = instance recall@k (see the module)."""
    archs = es.archs()
    if len(archs) < 2:
        raise UserError(f"instance retrieval needs embeddings of at least 2 architectures, got {archs or 'none'}")
    keys = es.keys
    # ALL/ALL: a row of the query's own architecture other than itself cannot share its key,
    # so "same key, self excluded" is exactly "same object in another architecture".
    out = {"ALL/ALL": _scores(ExactIndex(es.embedding, metric, device), es, keys, keys, ks,
                              exclude=np.arange(len(es)), unmatched="skip")}
    pairs = [(q, g) for q in archs for g in archs if q != g]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pairs), unit="pair", desc="instance retrieval", leave=False)
    for g in archs:
        gal = es.select(arch=g)
        index = ExactIndex(gal.embedding, metric, device)
        for q in archs:
            if q == g:
                continue
            qs = es.select(arch=q)
            out[f"{q}/{g}"] = _scores(index, qs, qs.keys, gal.keys, ks, unmatched="skip")
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return {"ALL/ALL": out["ALL/ALL"], **{f"{q}/{g}": out[f"{q}/{g}"] for q, g in pairs}}


def class_retrieval(
    es: EmbeddingSet, ks: Sequence[int] = DEFAULT_KS, metric: str = "l2", device: str = "cpu"
) -> dict[str, dict[str, float]]:
    """{"ALL" | arch: scores}: ``hit@k`` = class hit rate@k (nf2vec's "mAP"), ``map@k``, ``precision@k``."""
    out = {}
    for name, part in [("ALL", es), *((a, es.select(arch=a)) for a in es.archs())]:
        if len(part) < 2:
            continue
        labels = part.class_name.astype(str)
        out[name] = _scores(ExactIndex(part.embedding, metric, device), part, labels, labels, ks,
                            exclude=np.arange(len(part)))
    return out


@dataclass
class RetrieveResult:
    instance: dict[str, dict[str, float]]
    classes: dict[str, dict[str, float]]
    ks: tuple[int, ...]
    metric_instance: str
    metric_class: str
    split: str
    n: int

    def to_json(self) -> dict:
        clean = lambda d: {k: {m: (None if not np.isfinite(v) else round(float(v), 6)) for m, v in s.items()} for k, s in d.items()}  # noqa: E731
        return {
            "split": self.split, "n_embeddings": self.n, "ks": list(self.ks),
            "metric": {"instance": self.metric_instance, "class": self.metric_class},
            "instance": clean(self.instance), "class": clean(self.classes),
        }


def _pct(v) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"


def retrieval_markdown(result: RetrieveResult | dict) -> str:
    """Instance recall table (rows query/gallery) and class-level table (rows architecture)."""
    d = result.to_json() if isinstance(result, RetrieveResult) else result
    ks = d["ks"]
    lines = [
        f"### Instance retrieval across architectures (recall@k %, {d['metric']['instance']}, split {d['split']})",
        "",
        "| query/gallery | " + " | ".join(f"R@{k}" for k in ks) + " | queries | no match |",
        "|---|" + "---:|" * (len(ks) + 2),
    ]
    for name, s in d["instance"].items():
        n_q = int(s["n_queries"] or 0)
        lines.append(f"| {name} | " + " | ".join(_pct(s[f"hit@{k}"]) for k in ks) + f" | {n_q} | {int(s['no_match'] or 0)} |")
    lines += [
        "",
        f"### Class-level retrieval ({d['metric']['class']}, query itself excluded, split {d['split']})",
        "",
        "Class hit rate@k = a query succeeds if any of its k nearest has its class (the figure "
        "nf2vec's code computes, called mAP@k in seed 003); mAP@k and precision@k are the usual ones.",
        "",
        "| gallery | " + " | ".join(f"hit@{k}" for k in ks) + " | " + " | ".join(f"mAP@{k}" for k in ks)
        + " | " + " | ".join(f"P@{k}" for k in ks) + " |",
        "|---|" + "---:|" * (3 * len(ks)),
    ]
    for name, s in d["class"].items():
        cells = [_pct(s[f"{m}@{k}"]) for m in ("hit", "map", "precision") for k in ks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@locks_output()
def run_retrieve(
    embeddings: str | Path | Sequence[str | Path],
    out: str | Path | None,
    ks: Sequence[int] = DEFAULT_KS,
    metric: str = "auto",
    split: str = "test",
    archs: Sequence[str] | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> RetrieveResult:
    """Both evaluations on one split; writes ``retrieve.json`` and ``retrieve.md`` into ``out``."""
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise UserError(f"--k values must be >= 1, got {list(ks)}")
    m_inst, m_cls = resolve_metrics(metric)
    es = load_embeddings(embeddings)
    es = es if split == "all" else es.select(split=split)
    if not len(es):
        raise UserError(f"no embeddings of split {split!r}")
    if archs:
        by_lower = {a.lower(): a for a in es.archs()}
        bad = [a for a in archs if a.lower() not in by_lower]
        if bad:
            raise UserError(f"--arch {', '.join(bad)}: no {split} embeddings of it; expected one of {', '.join(by_lower.values())}")
        es = es.select(arch=[by_lower[a.lower()] for a in archs])
    result = RetrieveResult(
        instance=instance_retrieval(es, ks, m_inst, device, progress) if len(es.archs()) > 1 else {},
        classes=class_retrieval(es, ks, m_cls, device),
        ks=ks, metric_instance=m_inst, metric_class=m_cls, split=split, n=len(es),
    )
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "retrieve.json", json.dumps(result.to_json(), indent=2))
        write_text(out / "retrieve.md", retrieval_markdown(result))
    return result


__all__ = [
    "DEFAULT_KS",
    "resolve_metrics",
    "instance_retrieval",
    "class_retrieval",
    "RetrieveResult",
    "retrieval_markdown",
    "run_retrieve",
]
