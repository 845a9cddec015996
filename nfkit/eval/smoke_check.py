"""Check the outputs of a pipeline run (``make smoke`` runs it after the tiny demo).

Usage: ``python -m nfkit.eval.smoke_check RUN_DIR [--archs mlp,tri,hash] [--gan-samples N]``.

Exit codes say little about what a pipeline wrote, so this reads the artifacts back with nfkit's
own readers and counts their rows against what the dataset implies: one NeRF, one graph and one
embedding per object and architecture; a classifier per training set (all and each
architecture) with a transfer matrix of those rows and one column per architecture; the
retrieval tables (every query/gallery pair); the CLIP maps, their cache and the zero-shot and
CLIP-retrieval results; generated embeddings for every class; the pictures of each stage; the
report with every section heading and no section whose inputs were missing. Every problem is
printed with the artifact it concerns; the exit code is 1 when there is any.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ARCHS = ("mlp", "tri", "hash")


@dataclass
class Expected:
    """What the dataset implies: the objects (``class/object_id``) by split, the classes."""

    archs: tuple[str, ...]
    objects: dict[str, str] = field(default_factory=dict)  # key -> split
    classes: tuple[str, ...] = ()
    gan_samples: int | None = None

    @property
    def n(self) -> int:
        return len(self.objects)

    def split(self, name: str) -> list[str]:
        return sorted(k for k, s in self.objects.items() if s == name)


def _json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def _opens(problems: list[str], path: Path, reader: Callable, *args):
    """``reader(path, *args)``, or None with a problem naming ``path`` when it cannot be read."""
    try:
        return reader(path, *args)
    except Exception as exc:  # missing, truncated, another format: all the same here
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        problems.append(msg if str(path) in msg else f"{path}: {msg}")
        return None


def _png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as im:
        im.verify()


def _pngs(folder: Path, pattern: str, what: str, minimum: int = 1) -> list[str]:
    found = sorted(folder.glob(pattern)) if folder.is_dir() else []
    problems = [f"{folder}/{pattern}: {len(found)} {what}, expected at least {minimum}"] if len(found) < minimum else []
    for p in found:
        try:
            _png(p)
        except Exception as exc:  # any decoding error
            problems.append(f"{p}: not a readable image ({exc})")
    return problems


def _count(what: str, where: Path, got: Counter, exp: Expected) -> list[str]:
    problems = []
    for a in exp.archs:
        if got.get(a, 0) != exp.n:
            problems.append(f"{where}: {got.get(a, 0)} {what} of architecture {a}, expected {exp.n} (one per object)")
    return problems


# ------------------------------------------------------------------------------------ checks


def check_dataset(run: Path, exp: Expected) -> list[str]:
    from nfkit.data.multiview import scan_dataset

    data = run / "data"
    meta = _json(data / "dataset.json")
    entries = scan_dataset(data)
    exp.objects = {f"{e.class_name}/{e.object_id}": e.split for e in entries}
    exp.classes = tuple(sorted({e.class_name for e in entries}))
    problems = []
    if len(entries) != int(meta.get("n_objects", -1)):
        problems.append(f"{data}: {len(entries)} object folders, dataset.json says {meta.get('n_objects')}")
    for s in ("train", "val", "test"):
        if not exp.split(s):
            problems.append(f"{data}: no object in split {s} (classify and retrieve need train, val and test)")
    return problems


def check_nerfs(run: Path, exp: Expected) -> list[str]:
    from nfkit.nerf.store import iter_nerfs

    nerfs = run / "nerfs"
    got: Counter = Counter()
    problems = []
    for a in exp.archs:
        for r in iter_nerfs(nerfs / a, load_params=False) if (nerfs / a).is_dir() else ():
            got[r.arch.name] += 1
            if r.key not in exp.objects:
                problems.append(f"{r.shard}: NeRF {r.key} is no object of the dataset")
            if not math.isfinite(r.psnr):
                problems.append(f"{r.shard}: NeRF {r.key} has no finite held-out PSNR")
        if not (nerfs / "inits" / f"{a}.init.h5").is_file():
            problems.append(f"{nerfs}/inits/{a}.init.h5: missing (the shared init of {a})")
    return _count("NeRFs", nerfs, got, exp) + problems


def check_views(run: Path, exp: Expected) -> list[str]:
    problems = _pngs(run, "dataset_preview.png", "dataset preview")
    for a in exp.archs:
        problems += _pngs(run / "views" / a, "*/*.png", f"{a} renders")
    return problems


def check_graphs(run: Path, exp: Expected) -> list[str]:
    from nfkit.graphs.store import GraphShard, find_graph_shards

    graphs = run / "graphs"
    got: Counter = Counter()
    for p in find_graph_shards(graphs):
        shard = GraphShard(p)
        got.update(m.arch for m in shard.meta)
    return _count("graphs", graphs, got, exp)


def check_encoder(run: Path, exp: Expected) -> list[str]:
    from nfkit.encoder.checkpoint import load_checkpoint

    enc = run / "encoder"
    problems: list[str] = []
    ckpt = _opens(problems, enc / "best.h5", load_checkpoint)
    log = _opens(problems, enc / "train_log.json", _json)
    if log is not None and not log.get("history"):
        problems.append(f"{enc}/train_log.json: no epoch in the training history")
    trained = set(ckpt.trained_archs) if ckpt is not None else set()
    if ckpt is not None and not set(exp.archs) <= trained:
        problems.append(f"{enc}/best.h5: trained on {sorted(trained)}, expected {list(exp.archs)}")
    return problems


def check_embeddings(run: Path, exp: Expected) -> list[str]:
    import numpy as np

    from nfkit.embed.store import load_embeddings

    emb = run / "embeddings"
    es = load_embeddings(emb)
    problems = _count("embeddings", emb, Counter(es.arch.astype(str).tolist()), exp)
    if not np.isfinite(es.embedding).all():
        problems.append(f"{emb}: non-finite embeddings")
    keys = set(es.keys.astype(str).tolist())
    if keys != set(exp.objects):
        problems.append(f"{emb}: embeds {len(keys)} objects, the dataset has {exp.n}")
    return problems


def check_clip(run: Path, exp: Expected) -> list[str]:
    from nfkit.clip.cache import read_clip_cache
    from nfkit.clip.maps import load_maps
    from nfkit.embed.store import load_embeddings

    clip = run / "clip"
    problems: list[str] = []
    if not (clip / "nfkit-clip.pt").is_file():
        problems.append(f"{clip}/nfkit-clip.pt: missing (train-clip)")
    maps = _opens(problems, clip / "maps.h5", load_maps)
    es = _opens(problems, run / "embeddings", load_embeddings)
    if maps is not None and es is not None and maps.embed_dim != es.dim:
        problems.append(f"{clip}/maps.h5: maps {maps.embed_dim}-d NeRF embeddings, the embeddings are {es.dim}-d")
    summary = _opens(problems, clip / "map-clip.json", _json)
    for s in ("train", "val", "test") if summary is not None else ():
        if s not in summary.get("metrics", {}):
            problems.append(f"{clip}/map-clip.json: no metrics of split {s}")
    caches = sorted(clip.glob("cache-*.h5"))
    if not caches:
        problems.append(f"{clip}/cache-*.h5: no CLIP cache")
    for c in caches:
        cache = _opens(problems, c, read_clip_cache)
        if cache is None:
            continue
        objects = {str(k) for k in cache.keys}
        if len(objects) < exp.n:
            problems.append(f"{c}: CLIP embeddings of {len(objects)} objects, expected {exp.n}")
    return problems


def check_classify(run: Path, exp: Expected) -> list[str]:
    from nfkit.tasks.classifier import load_classifier

    out = run / "classify"
    problems: list[str] = []
    res = _opens(problems, out / "classify.json", _json) or {}
    rows = ["all", *exp.archs]
    acc = res.get("accuracy", {})
    if sorted(acc) != sorted(rows):
        problems.append(f"{out}/classify.json: transfer matrix rows {sorted(acc)}, expected {sorted(rows)}")
    for r, cols in acc.items():
        if sorted(cols) != sorted(exp.archs):
            problems.append(f"{out}/classify.json: row {r} has columns {sorted(cols)}, expected {sorted(exp.archs)}")
        bad = [c for c, v in cols.items() if v is None or not 0.0 <= float(v) <= 1.0]
        if bad:
            problems.append(f"{out}/classify.json: row {r}: accuracy outside [0, 1] for {bad}")
    if res and sorted(res.get("classes", [])) != sorted(exp.classes):
        problems.append(f"{out}/classify.json: classes {res.get('classes')}, expected {list(exp.classes)}")
    for r in rows:
        _opens(problems, out / f"classifier-{r}.h5", load_classifier)
    zs = _opens(problems, out / "zero-shot.json", _json)
    if zs is None:
        return problems
    methods = [row.get("method", "") for row in zs.get("rows", [])]
    if "nerf2clip" not in methods:
        problems.append(f"{out}/zero-shot.json: no nerf2clip row (rows: {methods})")
    if sorted(zs.get("classes", [])) != sorted(exp.classes):
        problems.append(f"{out}/zero-shot.json: classes {zs.get('classes')}, expected {list(exp.classes)}")
    return problems


def check_retrieve(run: Path, exp: Expected) -> list[str]:
    out = run / "retrieve"
    problems: list[str] = []
    res = _opens(problems, out / "retrieve.json", _json) or {}
    pairs = {"ALL/ALL"} | {f"{q}/{g}" for q in exp.archs for g in exp.archs if q != g}
    if res and set(res.get("instance", {})) != pairs:
        problems.append(f"{out}/retrieve.json: instance table rows {sorted(res.get('instance', {}))}, expected {sorted(pairs)}")
    if res and "ALL" not in res.get("class", {}):
        problems.append(f"{out}/retrieve.json: no class-level ALL row")
    n_test = len(exp.split("test")) * len(exp.archs)
    if res and res.get("n_embeddings") != n_test:
        problems.append(f"{out}/retrieve.json: {res.get('n_embeddings')} test embeddings, expected {n_test}")
    ev = (_opens(problems, out / "clip-retrieval.json", _json) or {}).get("results")
    if ev is not None and (not any(k.startswith("image") for k in ev) or "text -> NeRF" not in ev):
        problems.append(f"{out}/clip-retrieval.json: tables {sorted(ev)}, expected image -> NeRF and text -> NeRF")
    problems += _pngs(out, "query-photo-*.png", "photo-query pictures")
    problems += _pngs(out, "query-text-*.png", "text-query pictures")
    problems += _pngs(out, "query-shard-*.png", "--query-nerf pictures")
    return problems


def check_generate(run: Path, exp: Expected) -> list[str]:
    from nfkit.embed.store import load_embeddings
    from nfkit.generate.gan import load_gan

    out = run / "generate"
    problems: list[str] = []
    gen = _opens(problems, out / "generated.h5", load_embeddings)
    if gen is not None:
        per_class = Counter(gen.class_name.astype(str).tolist())
        if sorted(per_class) != sorted(exp.classes):
            problems.append(f"{out}/generated.h5: classes {sorted(per_class)}, expected {list(exp.classes)}")
        if exp.gan_samples is not None and any(n != exp.gan_samples for n in per_class.values()):
            problems.append(f"{out}/generated.h5: {dict(per_class)} per class, expected {exp.gan_samples} each")
    for c in exp.classes:
        _opens(problems, out / "gan" / f"{c}.h5", load_gan)
    q = _opens(problems, out / "quality.json", _json)
    if q is not None and not q.get("rows"):
        problems.append(f"{out}/quality.json: no rows")
    if q is not None:  # the demo runs generate gan --clip-check: a row per class and source
        from nfkit.generate.clip_check import SOURCES

        got = {(r.get("class"), r.get("source")) for r in q.get("clip_check", [])}
        want = {(c, s) for c in exp.classes for s in SOURCES}
        if got != want:
            problems.append(f"{out}/quality.json: CLIP check rows for {sorted(got)}, expected one per class and source")
    problems += _pngs(out / "views", "*/gan-*.png", "rendered samples", minimum=len(exp.classes))
    problems += _pngs(out / "interpolate", "*.png", "interpolation pictures")
    return problems


def check_report(run: Path, exp: Expected) -> list[str]:
    from nfkit.eval.report import HEADINGS, NOT_AVAILABLE

    path = run / "report.md"
    if not path.is_file():
        return [f"{path}: missing"]
    text = path.read_text()
    lines = text.splitlines()
    problems = [f"{path}: no section {h!r}" for h in HEADINGS if h not in lines]
    problems += [f"{path}: {ln}" for ln in lines if ln.startswith(NOT_AVAILABLE)]
    for needle in ("### Classification accuracy", "### Transfer matrices", "### Instance retrieval",
                   "### Class-level retrieval", "### Quality of the generated embeddings"):
        if needle not in text:
            problems.append(f"{path}: no table {needle!r}")
    for link in (ln[ln.index("](") + 2:-1] for ln in lines if ln.startswith("![") and ln.endswith(")")):
        if not (run / link).is_file():
            problems.append(f"{path}: picture {link} does not exist")
    return problems


CHECKS: tuple[tuple[str, Callable[[Path, Expected], list[str]]], ...] = (
    ("dataset", check_dataset),
    ("nerfs", check_nerfs),
    ("views", check_views),
    ("graphs", check_graphs),
    ("encoder", check_encoder),
    ("embeddings", check_embeddings),
    ("clip", check_clip),
    ("classify", check_classify),
    ("retrieve", check_retrieve),
    ("generate", check_generate),
    ("report", check_report),
)


def smoke_check(run: str | Path, archs: Sequence[str] = ARCHS, gan_samples: int | None = None,
                echo: Callable[[str], None] | None = None) -> list[str]:
    """Every problem found in the run folder, as ``stage: message`` lines (empty: all good).
    A check that raises (an artifact missing or unreadable) is one problem naming it."""
    run = Path(run)
    exp = Expected(tuple(archs), gan_samples=gan_samples)
    problems: list[str] = []
    for name, check in CHECKS:
        if name != "dataset" and not exp.objects:
            found = [f"{name}: not checked (no dataset to count against)"]
        else:
            try:
                found = [f"{name}: {p}" for p in check(run, exp)]
            except Exception as exc:  # a missing or unreadable artifact: name it and go on
                found = [f"{name}: {type(exc).__name__}: {exc}"]
        if echo is not None:
            echo(f"{'ok  ' if not found else 'FAIL'} {name}" + (f" ({len(found)} problem(s))" if found else ""))
        problems += found
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="the workspace of the run (e.g. the smoke run's folder)")
    p.add_argument("--archs", default=",".join(ARCHS), help="architectures fitted (comma-separated)")
    p.add_argument("--gan-samples", type=int, default=None, help="generated embeddings per class (generate gan --samples)")
    a = p.parse_args(argv)
    if not a.run.is_dir():
        print(f"smoke check: {a.run}: no such folder", file=sys.stderr)
        return 1
    archs = [s.strip() for s in a.archs.split(",") if s.strip()]
    problems = smoke_check(a.run, archs, a.gan_samples, echo=print)
    if problems:
        print(f"smoke check: {len(problems)} problem(s) in {a.run}:", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        return 1
    print(f"smoke check: every artifact of {a.run} opens and has the expected rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
