"""The downstream-task section of the run report: R, R+C and C side by side.

``python -m nfkit.eval.tasks_report --run R=ws/embeddings-r --run R+C=ws/embeddings-rc
--run C=ws/embeddings-c --nerfs ws/nerfs --out ws/report`` writes ``OUT/tasks.md`` with the
pictures beside it:

- classification accuracy per architecture (classifier trained on all), the transfer matrix
  of each run (seed 000 Tables 2/4 layout);
- instance retrieval recall@k (the paper's query/gallery columns) and class-level retrieval;
- t-SNE of the test embeddings (colour = class, marker = architecture; seed 000 Fig. 3);
- example retrievals (a test NeRF of one architecture, its nearest test NeRFs of the others);
- next to them, the seeds' ShapenetRender numbers (:mod:`nfkit.eval.seed_numbers`), labelled.

Each run's metrics are computed by the stages' library functions (``run_classify``,
``run_retrieve``) into ``OUT/<run>/``, and reused when already there (``reuse=True``).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nfkit.embed.store import load_embeddings
from nfkit.eval import seed_numbers as seeds
from nfkit.io.artifacts import atomic_path


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower() or "run"


def _fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.1f}"


def _pct(d: Mapping | None, key: str) -> str:
    v = None if d is None else d.get(key)
    return _fmt(None if v is None else 100 * v)


def _run_metrics(label: str, emb: Path, out: Path, preset: str, device: str, progress: bool, reuse: bool) -> tuple[dict, dict]:
    from nfkit.tasks.classifier import classifier_config
    from nfkit.tasks.classify import run_classify
    from nfkit.tasks.retrieve import run_retrieve

    cdir, rdir = out / _slug(label) / "classify", out / _slug(label) / "retrieve"
    if not (reuse and (cdir / "classify.json").is_file()):
        run_classify(emb, cdir, classifier_config(preset), None, device=device, progress=progress,
                     extra_config={"preset": preset})
    if not (reuse and (rdir / "retrieve.json").is_file()):
        run_retrieve(emb, rdir, device=device, progress=progress)
    return json.loads((cdir / "classify.json").read_text()), json.loads((rdir / "retrieve.json").read_text())


def _arch_order(a: str) -> tuple[int, str]:
    from nfkit.nerf.specs import REGISTRY

    names = list(REGISTRY)
    return (names.index(a), a) if a in names else (len(names), a)


def _accuracy_section(cls: Mapping[str, dict]) -> list[str]:
    archs = sorted({a for d in cls.values() for a in d["test_archs"]}, key=_arch_order)
    lines = ["### Classification accuracy (%), classifier trained on all training architectures", "",
             "| run | " + " | ".join(archs) + " |", "|---|" + "---:|" * len(archs)]
    for label, d in cls.items():
        row = d["accuracy"].get("all", {})
        lines.append(f"| nfkit {label} | " + " | ".join(_pct(row, a) for a in archs) + " |")
    for label in cls:
        ref = seeds.CLASSIFY_TABLE8.get(label.upper(), {}).get("all")
        if ref:
            unseen = seeds.CLASSIFY_TABLE9[label.upper()]["all"]
            lines.append(f"| seed 000 Tables 8–9, {label} (ShapenetRender) | "
                         + " | ".join(_fmt(ref.get(a, unseen.get(a))) for a in archs) + " |")
    n_cls = max(len(d["classes"]) for d in cls.values())
    return lines + ["", f"Chance = 1/{n_cls} = {100 / n_cls:.1f} %.", ""]


def _transfer_section(cls: Mapping[str, dict]) -> list[str]:
    lines = ["### Transfer matrices (accuracy %, rows = classifier training set, columns = test architecture)", ""]
    for label, d in cls.items():
        archs = sorted(d["test_archs"], key=_arch_order)
        ref = seeds.CLASSIFY_TABLE8.get(label.upper(), {})
        ref9 = seeds.CLASSIFY_TABLE9.get(label.upper(), {})
        lines += [f"**nfkit {label}** (in brackets: seed 000 Tables 8–9, ShapenetRender)", "",
                  "| trained on | " + " | ".join(archs) + " |", "|---|" + "---:|" * len(archs)]
        for s, row in d["accuracy"].items():
            cells = []
            for a in archs:
                theirs = ref.get(s, {}).get(a, ref9.get(s, {}).get(a))
                cells.append(_pct(row, a) + (f" ({theirs:.1f})" if theirs is not None else ""))
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _retrieval_section(ret: Mapping[str, dict]) -> list[str]:
    pairs = list(seeds.RETRIEVAL_PAIRS)
    lines = ["### Instance retrieval across architectures (recall@k %, test split)", "",
             "ALL/ALL: every test embedding is a query; the gallery is every test embedding but the "
             "query; a hit is the same object in another architecture.", "",
             "| run | k | " + " | ".join(pairs) + " |", "|---|---:|" + "---:|" * len(pairs)]
    for label, d in ret.items():
        for k in d["ks"]:
            lines.append(f"| nfkit {label} | {k} | " + " | ".join(_pct(d["instance"].get(p), f"hit@{k}") for p in pairs) + " |")
    for label in ret:
        for k, row in seeds.RETRIEVAL_TABLE10.get(label.upper(), {}).items():
            lines.append(f"| seed 000 Table 10, {label} (ShapenetRender) | {k} | " + " | ".join(_fmt(row[p]) for p in pairs) + " |")
    ks = (1, 5, 10)
    lines += ["", "### Class-level retrieval (%, test split, query excluded, gallery = all test embeddings)", "",
              "| run | metric | " + " | ".join(f"@{k}" for k in ks) + " |", "|---|---|---:|---:|---:|"]
    for label, d in ret.items():
        s = d["class"].get("ALL")
        for m, name in (("hit", "class hit rate"), ("map", "mAP"), ("precision", "precision")):
            lines.append(f"| nfkit {label} ({d['metric']['class']}) | {name} | " + " | ".join(_pct(s, f"{m}@{k}") for k in ks) + " |")
    lines.append("| seed 003 Table V, nf2vec on MLP NeRFs (ShapenetRender; called mAP there) | class hit rate | "
                 + " | ".join(_fmt(seeds.NF2VEC_CLASS_HIT_RATE[k]) for k in ks) + " |")
    return lines + [""]


def _pictures(label: str, emb: Path, out: Path, nerfs, n_examples: int, tsne: bool, device: str,
              resolution: int = 96, reuse: bool = False) -> list[str]:
    """t-SNE of the test embeddings and example retrievals (a NeRF of the first architecture,
    its nearest NeRFs of the others) as PNGs in ``out``; Markdown image lines, relative to
    ``out``. ``reuse``: keep example pictures that already exist instead of rendering again."""
    from nfkit.eval.plots import scatter_by_class, tsne_2d

    es = load_embeddings(emb).select(split="test")
    lines = []
    if tsne and len(es) >= 3:
        png = out / f"tsne-{_slug(label)}.png"
        scatter_by_class(tsne_2d(es.embedding), es.class_name, es.arch, png, title=f"{label}: test embeddings")
        lines.append(f"![t-SNE {label}]({png.name})")
    if nerfs is not None and n_examples > 0 and len(es.archs()) > 1:
        from nfkit.tasks.query import NerfLookup, retrieval_picture, search_gallery

        lookup = NerfLookup(nerfs)
        query_arch = sorted(es.archs(), key=_arch_order)[0]
        queries = es.select(arch=query_arch)
        gallery = es.select(arch=[a for a in es.archs() if a != query_arch])
        seen: set[str] = set()
        for i in range(len(queries)):
            if len(seen) >= n_examples or queries.class_name[i] in seen:
                continue
            rec = lookup.get(query_arch, queries.keys[i])
            if rec is None:
                continue
            seen.add(queries.class_name[i])
            png = out / f"examples-{_slug(label)}-{len(seen)}.png"
            if not (reuse and png.is_file()):
                hits = search_gallery(queries.take([i]), gallery, k=5, metric="cosine", device=device)[0]
                png = retrieval_picture(rec, hits, lookup, png, resolution=resolution, device=device)
            lines.append(f"![retrieval {label} {len(seen)}]({png.name})")
    return lines


def tasks_report(
    runs: Mapping[str, str | Path],
    out: str | Path,
    nerfs: str | Path | Sequence[str | Path] | None = None,
    preset: str = "cpu",
    device: str = "cpu",
    progress: bool = False,
    tsne: bool = True,
    n_examples: int = 2,
    reuse: bool = True,
) -> Path:
    """Write ``out/tasks.md`` for runs ``{label: embeddings folder}`` (labels R, R+C, C get the
    seeds' numbers beside them). Returns the Markdown path."""
    if not runs:
        raise ValueError("tasks_report needs at least one run (label -> embeddings folder)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cls, ret, pics = {}, {}, {}
    for label, emb in runs.items():
        cls[label], ret[label] = _run_metrics(label, Path(emb), out, preset, device, progress, reuse)
        pics[label] = _pictures(label, Path(emb), out, nerfs, n_examples, tsne, device)
    lines = ["## Downstream tasks: classification and retrieval", "",
             "nfkit's numbers are measured on this run's data; the seeds' numbers (ShapenetRender, the "
             "authors' encoders and hardware) are printed beside them for reference only.", ""]
    lines += _accuracy_section(cls) + _transfer_section(cls) + _retrieval_section(ret)
    if any(pics.values()):
        lines += ["### Pictures", ""]
        for label, items in pics.items():
            if items:
                lines += [f"**{label}**", "", *(f"{p}\n" for p in items)]
    path = out / "tasks.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", required=True, metavar="LABEL=EMBEDDINGS",
                   help="a run: its label (R, R+C, C) and embeddings folder (repeatable)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--nerfs", type=Path, action="append", default=None,
                   help="NeRF shards or folders, for the example retrieval pictures (repeatable: add the unseen architectures' NeRFs so that they are drawn too)")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--examples", type=int, default=2)
    p.add_argument("--no-tsne", action="store_true")
    p.add_argument("--recompute", action="store_true", help="recompute metrics already in OUT")
    a = p.parse_args(argv)
    runs = dict(r.split("=", 1) for r in a.run)
    path = tasks_report(runs, a.out, a.nerfs, a.preset, tsne=not a.no_tsne, n_examples=a.examples,
                        reuse=not a.recompute, progress=True)
    print(path)


if __name__ == "__main__":
    main()
