"""The Markdown report of what a pipeline run produced (``make demo`` ends with it).

Usage: ``python -m nfkit.eval.report RUN_DIR`` where RUN_DIR is a workspace: ``data/`` (the
dataset), ``nerfs/``, ``graphs/``, ``encoder/``, ``embeddings/``, ``clip/``, ``classify/``,
``retrieve/``, ``generate/``, ``views/`` and optionally ``bench/``. Writes ``RUN_DIR/report.md``
with its pictures beside it (the stages' own PNGs, and the t-SNE and example retrievals drawn
into ``RUN_DIR/report/``).

Every number is read back from the artifacts on disk, not from the logs of the run; a section
whose inputs are missing says so (a line starting with :data:`NOT_AVAILABLE`). The seeds'
published numbers appear only next to nfkit's, labelled as theirs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

#: how a section whose inputs are missing starts its one line
NOT_AVAILABLE = "_Not available:"

#: the report's section headings, in order (the smoke check looks for them)
HEADINGS = (
    "## Dataset",
    "## fit-nerfs",
    "## build-graphs",
    "## pretrain-encoder",
    "## embed",
    "## Downstream tasks: classification and retrieval",
    "## Zero-shot classification",
    "## CLIP: photo and text retrieval",
    "## Generation",
)


def _missing(heading: str, why: str) -> list[str]:
    return [heading, "", f"{NOT_AVAILABLE} {why}._", ""]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _dataset_section(data: Path) -> list[str]:
    meta = _read_json(data / "dataset.json")
    if meta is None:
        return _missing("## Dataset", f"no readable {data}/dataset.json (run `nfkit synth {data.name}`)")
    cfg = meta.get("config", {})
    lines = [
        "## Dataset",
        "",
        f"- `{data}`: {meta.get('n_objects', '?')} objects, {len(meta.get('classes', {}))} classes, "
        f"{cfg.get('views', '?')} views of {cfg.get('resolution', '?')}×{cfg.get('resolution', '?')} px, "
        f"seed {cfg.get('seed', '?')}",
        f"- splits: {', '.join(f'{k} {v}' for k, v in meta.get('splits', {}).items())}",
    ]
    return lines + [""]


def _fit_section(nerfs: Path) -> list[str]:
    from nfkit.nerf.store import PSNR_ON, find_shards, iter_nerfs

    # NeRF shards only, by their header (the shared inits kept in nerfs/inits/ are another
    # kind); not by folder names, which may be anywhere in the run folder's own path
    shards = find_shards(nerfs) if nerfs.is_dir() else []
    if not shards:
        return _missing("## fit-nerfs", f"no NeRF shards in {nerfs} (run `nfkit fit-nerfs DATASET`)")
    by_arch: dict[str, list] = defaultdict(list)
    for rec in iter_nerfs(shards, load_params=False):
        by_arch[rec.arch.name].append(rec)
    lines = [
        "## fit-nerfs",
        "",
        "| arch | NeRFs | held-out PSNR mean (dB) | min | max | PSNR measured on | fit s/NeRF (mean) | init |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for arch, recs in by_arch.items():
        psnr = np.array([r.psnr for r in recs], float)
        secs = np.array([r.fit_seconds for r in recs], float)
        ok = psnr[np.isfinite(psnr)]
        fmt = (lambda v: f"{v:.2f}") if ok.size else (lambda v: "n/a")
        on: dict[str, int] = defaultdict(int)
        for r in recs:
            on[r.psnr_on] += 1
        on_text = "; ".join(f"{PSNR_ON.get(k, k)} ({n})" for k, n in sorted(on.items()) if k) or "n/a"
        mean_secs = f"{np.nanmean(secs):.1f}" if np.isfinite(secs).any() else "n/a"
        lines.append(
            f"| {arch} | {len(recs)} | {fmt(ok.mean() if ok.size else math.nan)} | "
            f"{fmt(ok.min() if ok.size else math.nan)} | {fmt(ok.max() if ok.size else math.nan)} | "
            f"{on_text} | {mean_secs} | `{recs[0].init_fingerprint}` |"
        )
    worst = sorted(
        (r for rs in by_arch.values() for r in rs if math.isfinite(r.psnr)), key=lambda r: r.psnr
    )[:3]
    if worst:
        lines += ["", "Lowest held-out PSNR: " + ", ".join(
            f"{r.arch.name} {r.key} {r.psnr:.1f} dB" for r in worst)]
    return lines + [""]


def _graph_section(graphs: Path) -> list[str]:
    from nfkit.graphs.convert import graph_stats

    if not graphs.is_dir() or not any(graphs.rglob("*.h5")):
        return _missing("## build-graphs", f"no graph shards in {graphs} (run `nfkit build-graphs`)")
    lines = [
        "## build-graphs",
        "",
        "| arch | family | graphs | nodes/graph | edges/graph | MB/graph |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in graph_stats(graphs):
        nodes = f"{s.nodes_min}" if s.nodes_min == s.nodes_max else f"{s.nodes_min}–{s.nodes_max}"
        edges = f"{s.edges_min}" if s.edges_min == s.edges_max else f"{s.edges_min}–{s.edges_max}"
        lines.append(
            f"| {s.arch} | {s.family} | {s.graphs} | {nodes} | {edges} | {s.bytes / 2**20 / s.graphs:.2f} |"
        )
    return lines + [""]


def _loss_label(run: Path) -> str:
    """R, R+C or C: the encoder's training loss, as the seeds label their encoders."""
    log = _read_json(run / "encoder" / "train_log.json") or {}
    loss = str(log.get("config", {}).get("loss", "")).upper()
    return loss if loss in ("R", "R+C", "C") else "this run"


def _encoder_section(run: Path) -> list[str]:
    enc = run / "encoder"
    log = _read_json(enc / "train_log.json")
    if log is None or not (enc / "best.h5").is_file():
        return _missing("## pretrain-encoder", f"no {enc}/train_log.json and best.h5 (run `nfkit pretrain-encoder`)")
    cfg, hist = log.get("config", {}), log.get("history", [])
    lines = [
        "## pretrain-encoder",
        "",
        f"- preset `{log.get('preset', '?')}`, loss {str(cfg.get('loss', '?')).upper()}, encoder {cfg.get('encoder', '?')} "
        f"(hidden {cfg.get('hidden', '?')}, {cfg.get('layers', '?')} layers, {cfg.get('embed_dim', '?')}-d embeddings), "
        f"{len(hist)} of {cfg.get('epochs', '?')} epochs; checkpoint `{enc / 'best.h5'}`",
    ]
    if not hist:
        return lines + [""]
    has_psnr, has_siglip = any("val_psnr" in h for h in hist), any("val_siglip" in h for h in hist)
    head = "| epoch | loss | s/step |" + (" val PSNR (dB) | another object's embedding (dB) |" if has_psnr else "") + (
        " val SigLIP |" if has_siglip else "")
    if has_psnr:
        lines += ["", "Validation PSNR: the decoder's render from a NeRF's embedding against the NeRF's own render, "
                  "next to the render from another object's embedding (the floor)."]
    lines += ["", head, "|" + "---:|" * (head.count("|") - 1)]
    step = max(1, len(hist) // 10)
    shown = sorted(set(range(0, len(hist), step)) | {len(hist) - 1})
    for i in shown:
        h = hist[i]
        row = f"| {h.get('epoch', i + 1)} | {h.get('loss', math.nan):.4f} | {h.get('s_per_step', math.nan):.2f} |"
        if has_psnr:
            row += f" {h.get('val_psnr', math.nan):.2f} | {h.get('val_psnr_floor', math.nan):.2f} |"
        if has_siglip:
            row += f" {h.get('val_siglip', math.nan):.3f} |"
        lines.append(row)
    fit = log.get("render_decoder")
    if isinstance(fit, dict) and "refit_steps" in fit:
        line = (f"Render decoder (the decoder every later stage renders embeddings with, fitted to the frozen "
                f"training embeddings; nfkit/encoder/refit.py): {fit['refit_steps']} steps on {fit.get('refit_nerfs', '?')} "
                f"training NeRFs in {fit.get('refit_seconds', math.nan):.0f} s, loss {fit.get('refit_loss_first', math.nan):.3f} "
                f"-> {fit.get('refit_loss_last', math.nan):.3f}.")
        if "val_own_grid_psnr" in fit:
            line += (f" PSNR on {fit.get('val_own_grid_nerfs', '?')} validation NeRFs, each rendered through its own "
                     f"occupancy grid as a generated embedding is: {fit['val_own_grid_psnr']:.2f} dB, against "
                     f"{fit.get('val_own_grid_psnr_training_decoder', math.nan):.2f} dB for the decoder trained with the encoder.")
        lines += ["", line]
    return lines + [""]


def _embedding_section(run: Path, out: Path, resolution: int, device: str, examples: int = 2) -> tuple[list[str], list[str]]:
    """The embed section, and the picture lines (t-SNE, example retrievals) for the tasks section."""
    from nfkit.embed.store import load_embeddings
    from nfkit.eval.embedding_space import arch_knn_accuracy, cross_arch_class_knn
    from nfkit.eval.tasks_report import _arch_order, _pictures

    emb = run / "embeddings"
    try:
        es = load_embeddings(emb)
    except Exception as exc:  # no folder, no shard, or an unreadable one (nfkit's artifact errors)
        return _missing("## embed", f"no readable embedding shards in {emb} (run `nfkit embed`): {exc}"), []
    archs = sorted(es.archs(), key=_arch_order)
    splits = [s for s in ("train", "val", "test") if s in set(es.split.astype(str))]
    lines = ["## embed", "",
             f"{len(es)} embeddings of {es.dim} dimensions (encoder `{es.encoder_fingerprint}`):", "",
             "| arch | " + " | ".join(splits) + " | all |", "|---|" + "---:|" * (len(splits) + 1)]
    for a in archs:
        sub = es.select(arch=a)
        lines.append(f"| {a} | " + " | ".join(str(int(np.sum(sub.split.astype(str) == s))) for s in splits)
                     + f" | {len(sub)} |")
    test = es.select(split="test")
    if len(test) >= 3 and len(archs) > 1:
        k = min(5, len(test) - 1)
        a_acc = arch_knn_accuracy(test.embedding, test.arch, k)
        c_acc = cross_arch_class_knn(test.embedding, test.class_name, test.arch, k)
        lines += ["", f"Test split, cosine {k}-NN (leave one out): the architecture of an embedding is predicted "
                  f"{100 * a_acc:.1f} % of the time (chance {100 / len(archs):.1f} %; near chance = the space "
                  f"does not separate architectures); its class from the other architectures' embeddings only: "
                  f"{100 * c_acc:.1f} % (chance {100 / max(1, len(test.classes())):.1f} %)."]
    out.mkdir(parents=True, exist_ok=True)
    nerfs = run / "nerfs" if (run / "nerfs").is_dir() else None
    rel = out.relative_to(run) if out.is_relative_to(run) else out
    pics = _pictures(_loss_label(run), emb, out, nerfs, examples, True, device, resolution=resolution, reuse=True)
    pics = [p.replace("](", f"]({rel}/", 1) for p in pics]
    return lines + [""], pics


def _tasks_section(run: Path, pictures: list[str]) -> list[str]:
    from nfkit.eval.tasks_report import _accuracy_section, _retrieval_section, _transfer_section

    heading = "## Downstream tasks: classification and retrieval"
    label = _loss_label(run)
    cls = _read_json(run / "classify" / "classify.json")
    ret = _read_json(run / "retrieve" / "retrieve.json")
    lines = [heading, "",
             f"nfkit's numbers are measured on this run's data with its encoder (loss {label}); the seeds' numbers "
             "(ShapenetRender, the authors' encoders and hardware) are printed beside them for reference only.", ""]
    if cls is None:
        lines += [f"{NOT_AVAILABLE} no readable classify/classify.json (run `nfkit classify`)._", ""]
    else:
        lines += _accuracy_section({label: cls}) + _transfer_section({label: cls})
    if ret is None:
        lines += [f"{NOT_AVAILABLE} no readable retrieve/retrieve.json (run `nfkit retrieve`)._", ""]
    else:
        lines += _retrieval_section({label: ret})
    query = sorted((run / "retrieve").glob("query-shard-*.png")) if (run / "retrieve").is_dir() else []
    pics = pictures + [f"![query NeRF]({p.relative_to(run)})" for p in query]
    if pics:
        lines += ["### Pictures", "",
                  "t-SNE of the test embeddings (colour = class, marker = architecture; seed 000 Fig. 3), a test NeRF "
                  "of one architecture with its nearest test NeRFs of the others, and `retrieve --query-nerf`.", ""]
        lines += [ln for p in pics for ln in (p, "")]
    return lines


def _zero_shot_section(run: Path) -> list[str]:
    heading = "## Zero-shot classification"
    md = run / "classify" / "zero-shot.md"
    if not md.is_file():
        return _missing(heading, "no classify/zero-shot.md (run `nfkit classify --zero-shot` after `nfkit map-clip`)")
    return [heading, "", md.read_text().strip(), ""]


def _clip_section(run: Path) -> list[str]:
    heading = "## CLIP: photo and text retrieval"
    summary = _read_json(run / "clip" / "map-clip.json")
    if summary is None:
        return _missing(heading, "no readable clip/map-clip.json (run `nfkit map-clip`)")
    model, pre = summary.get("clip_model", "?"), summary.get("clip_pretrained", "?")
    lines = [heading, "", f"CLIP `{model}` (weights `{pre}`, fingerprint `{summary.get('clip_fingerprint', '?')}`)."]
    if str(model).startswith("nfkit-clip"):
        lines.append(f"{model} is the small CLIP that `nfkit train-clip` trained on this dataset's views, not the "
                     "seeds' ViT-B/32: its numbers say whether the pipeline works, not what clip2nerf reaches.")
    lines += ["", "nerf2clip / clip2nerf: mean cosine between the mapped and the target embeddings, next to maps "
              "trained on shuffled pairs (the control).", "",
              "| split | n | nerf2clip | clip2nerf | control nerf2clip | control clip2nerf |", "|---|---:|---:|---:|---:|---:|"]
    metrics, control = summary.get("metrics", {}), summary.get("control", {})
    for split, m in metrics.items():
        c = control.get(split, {})
        lines.append(f"| {split} | {m.get('n', '?')} | {m.get('nerf2clip_cosine', math.nan):.3f} | "
                     f"{m.get('clip2nerf_cosine', math.nan):.3f} | {c.get('nerf2clip_cosine', math.nan):.3f} | "
                     f"{c.get('clip2nerf_cosine', math.nan):.3f} |")
    lines.append("")
    ev = run / "retrieve" / "clip-retrieval.md"
    if ev.is_file():
        lines += ["### Image and text queries: class recall (`retrieve --clip-eval`)", "", ev.read_text().strip(), ""]
    else:
        lines += [f"{NOT_AVAILABLE} no retrieve/clip-retrieval.md (run `nfkit retrieve --clip-eval`)._", ""]
    pics = [p for p in sorted((run / "retrieve").glob("query-*.png")) if not p.name.startswith("query-shard-")] \
        if (run / "retrieve").is_dir() else []
    if pics:
        lines += ["### Queries: `retrieve --query PHOTO` and `retrieve --text TEXT`", ""]
        lines += [ln for p in pics for ln in (f"![{p.stem}]({p.relative_to(run)})", "")]
    else:
        lines += [f"{NOT_AVAILABLE} no query pictures in retrieve/ (run `nfkit retrieve --query photo.jpg`)._", ""]
    return lines


def _generation_section(run: Path) -> list[str]:
    heading = "## Generation"
    gen = run / "generate"
    md = gen / "quality.md"
    if not md.is_file():
        return _missing(heading, "no generate/quality.md (run `nfkit generate gan`)")
    lines = [heading, ""]
    if (gen / "generated.h5").is_file():
        from nfkit.embed.store import load_embeddings

        es = load_embeddings(gen / "generated.h5")
        lines += [f"{len(es)} generated embeddings ({len(es.classes())} classes) in `{gen / 'generated.h5'}`.", ""]
    text = md.read_text().strip()
    # quality.md's sections become subsections of the report's Generation section
    lines += ["\n".join("#" + ln if ln.startswith("## ") else ln for ln in text.splitlines()), ""]
    views = sorted(gen.glob("views/*/gan-*.png"))
    firsts: dict[str, Path] = {}
    for p in views:
        firsts.setdefault(p.parent.name, p)
    if firsts:
        lines += ["### Generated samples, rendered through the decoder", ""]
        lines += [ln for c, p in firsts.items() for ln in (f"![{c}]({p.relative_to(run)})", "")]
    interp = sorted(gen.glob("interpolate/*.png"))
    if interp:
        lines += ["### Interpolation (row 1: decoded embeddings; row 2: interpolated weights)", ""]
        lines += [ln for p in interp for ln in (f"![{p.stem}]({p.relative_to(run)})", "")]
    return lines


def _pictures_section(run: Path) -> list[str]:
    views = run / "views"
    per_arch = [sorted(d.rglob("*.png"))[:2] for d in sorted(views.iterdir()) if d.is_dir()] if views.is_dir() else []
    pics = sorted(run.glob("*.png")) + [p for group in per_arch for p in group]
    if not pics:
        return []
    lines = ["## Pictures: the dataset and fitted NeRFs next to the ground truth", ""]
    for p in pics:
        rel = p.relative_to(run)
        lines.append(f"![{rel}]({rel})")
    return lines + [""]


def _bench_section(run: Path) -> list[str]:
    lines = []
    for md in sorted((run / "bench").glob("*.md")):
        lines += [f"## Benchmark: {md.stem}", "", md.read_text().strip(), ""]
    return lines


def build_report(run: Path, resolution: int = 96, device: str = "cpu", examples: int = 2) -> str:
    """The report's Markdown; the pictures it draws (t-SNE, ``examples`` example retrievals,
    kept when they exist) go to ``run/report/``."""
    run = Path(run)
    lines = [f"# nfkit run report: `{run}`", ""]
    lines += _dataset_section(run / "data")
    lines += _fit_section(run / "nerfs")
    lines += _graph_section(run / "graphs")
    lines += _encoder_section(run)
    emb_lines, pictures = _embedding_section(run, run / "report", resolution, device, examples)
    lines += emb_lines
    lines += _tasks_section(run, pictures)
    lines += _zero_shot_section(run)
    lines += _clip_section(run)
    lines += _generation_section(run)
    lines += _bench_section(run)
    lines += _pictures_section(run)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="folder of a pipeline run (e.g. demo_out)")
    parser.add_argument("--out", type=Path, default=None, help="report path (default RUN/report.md)")
    parser.add_argument("--resolution", type=int, default=96, help="pixels of each render in the example retrievals")
    parser.add_argument("--examples", type=int, default=2, help="example retrieval pictures (0 = none)")
    parser.add_argument("--device", default="cpu", help="device of the renders (cpu, cuda[:N])")
    parser.add_argument("--quiet", action="store_true", help="print only where the report is, not the report")
    args = parser.parse_args(argv)
    if not args.run.is_dir():
        print(f"error: {args.run}: no such folder", file=sys.stderr)
        return 1
    from nfkit.io.artifacts import atomic_path

    text = build_report(args.run, args.resolution, args.device, args.examples)
    out = args.out or args.run / "report.md"
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    if not args.quiet:
        print(text)
    missing = [ln for ln in text.splitlines() if ln.startswith(NOT_AVAILABLE)]
    print(f"report: {out.resolve()} ({len(missing)} section(s) without their inputs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
