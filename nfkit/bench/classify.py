"""Benchmark: classifying NeRFs from their weights against rendering them for a CNN.

``python -m nfkit.bench.classify --nerfs WS/nerfs --embeddings WS/embeddings --encoder
WS/encoder/best.h5 --out DIR [--arch mlp] [--views 1 9] [--resolution 64] [--epochs 8]``

In one run, on the same train/test NeRFs (seed 003 Table VII protocol, on this machine):

- **weights**: the embedding classifier (``cpu`` preset) trained on the train-split embeddings;
  at test time each NeRF is encoded by the encoder (``embed_records``: graph + GMN) and
  classified. ms per NeRF = encode + classify; accuracy on those fresh embeddings.
- **render k views + ResNet-18** for each k of ``--views``: k views per NeRF from a turntable of
  max(views) cameras (elevation 30°, distance 3.4, the procedural dataset's field of view), on
  black, ``--resolution`` px; torchvision ResNet-18 (``weights=None``: no pretrained weights are
  reachable here) trained from scratch on the renders of the train NeRFs (``--epochs``, Adam);
  at test time the k views are rendered and classified and the majority class is the answer
  (ties: the highest summed probability). ms per NeRF = render + classify.

Results: ``DIR/classify_bench.json`` and ``DIR/classify_bench.md`` (with seed 003 Table VII's
GPU numbers beside them, labelled).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nfkit.eval.seed_numbers import NF2VEC_TIMING_MS

log = logging.getLogger(__name__)


def render_set(records, n_views: int, ring: int, resolution: int, n_samples: int, grid_res: int,
               device: str = "cpu", progress: bool = False, desc: str = "render") -> tuple[np.ndarray, float]:
    """k views of each NeRF (the first ``n_views`` of ``ring`` spread evenly on the ring).

    Returns images (n, k, 3, H, W) float32 and the seconds spent rendering.
    """
    from nfkit.render.rays import turntable_cameras
    from nfkit.render.views import render_views

    step = max(1, ring // n_views)
    c2w = turntable_cameras(ring, 30.0, 3.4)[::step][:n_views]
    focal = 0.5 * resolution / math.tan(0.5 * 0.8)
    out = np.zeros((len(records), n_views, 3, resolution, resolution), np.float32)
    it = records
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(records, desc=desc, unit="nerf", leave=False)
    t0 = time.perf_counter()
    for i, rec in enumerate(it):
        imgs = render_views(rec.arch, rec.params, c2w, resolution, resolution, focal, n_samples, grid_res, device)
        out[i] = imgs.transpose(0, 3, 1, 2)
    return out, time.perf_counter() - t0


def make_resnet(n_classes: int) -> torch.nn.Module:
    from torchvision.models import resnet18

    return resnet18(weights=None, num_classes=n_classes)


def train_cnn(images: np.ndarray, labels: np.ndarray, n_classes: int, epochs: int, batch: int = 32,
              lr: float = 1e-3, seed: int = 0, device: str = "cpu", progress: bool = False) -> torch.nn.Module:
    """ResNet-18 from scratch on (n, 3, H, W) images with (n,) labels."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_resnet(n_classes).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        x, y = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
        gen = torch.Generator().manual_seed(seed)
        rng = range(epochs)
        if progress:
            from tqdm.auto import tqdm

            rng = tqdm(rng, desc="resnet18", unit="epoch", leave=False)
        for _ in rng:
            model.train()
            for rows in torch.randperm(len(x), generator=gen).split(batch):
                if len(rows) < 2:
                    continue
                loss = torch.nn.functional.cross_entropy(model(x[rows].to(device)), y[rows].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return model.eval()


@torch.no_grad()
def vote(model: torch.nn.Module, views: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, float]:
    """Majority class over each NeRF's k views. views (n, k, 3, H, W) -> (n,) labels, seconds."""
    n, k = views.shape[:2]
    t0 = time.perf_counter()
    probs = torch.softmax(model(torch.from_numpy(views.reshape(n * k, *views.shape[2:])).to(device)), 1).cpu()
    secs = time.perf_counter() - t0
    probs = probs.reshape(n, k, -1).numpy()
    counts = np.zeros((n, probs.shape[2]))
    np.add.at(counts, (np.repeat(np.arange(n), k), probs.argmax(2).ravel()), 1)
    score = counts + 1e-3 * probs.sum(1) / k  # ties in votes: the higher summed probability
    return score.argmax(1), secs


def weights_route(train_emb, val_emb, test_records, encoder: Path | None, test_emb, classes, device="cpu", progress=False) -> dict:
    from nfkit.tasks.classifier import classifier_config, predict, train_classifier

    clf = train_classifier(train_emb, val_emb, classifier_config("cpu"), classes=classes, device=device, progress=progress)
    encode_s = math.nan
    emb = test_emb
    if encoder is not None:
        from nfkit.tasks.classify import embed_records_with

        t0 = time.perf_counter()
        emb = embed_records_with(test_records, encoder, device=device)
        encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred, _ = predict(clf, emb)
    cls_s = time.perf_counter() - t0
    target = clf.class_index(emb.class_name)
    n = len(emb)
    return {"method": "weights: encoder + embedding classifier", "views": 0, "n_test": n,
            "accuracy": float((pred == target).mean()), "encode_or_render_ms": 1000 * encode_s / n,
            "classify_ms": 1000 * cls_s / n, "total_ms": 1000 * (encode_s + cls_s) / n,
            "note": "" if encoder is not None else "stored embeddings (no --encoder): encoding not timed"}


def render_route(train_recs, test_recs, classes, k: int, ring: int, args, device="cpu", progress=False) -> dict:
    lookup = {c: i for i, c in enumerate(classes)}
    tr_views, _ = render_set(train_recs, k, ring, args.resolution, args.samples, args.grid_res, device, progress, f"render train x{k}")
    tr_labels = np.repeat([lookup[r.class_name] for r in train_recs], k)
    model = train_cnn(tr_views.reshape(-1, *tr_views.shape[2:]), tr_labels, len(classes), args.epochs,
                      seed=args.seed, device=device, progress=progress)
    te_views, render_s = render_set(test_recs, k, ring, args.resolution, args.samples, args.grid_res, device, progress, f"render test x{k}")
    pred, cls_s = vote(model, te_views, device)
    target = np.array([lookup.get(r.class_name, -1) for r in test_recs])
    n = len(test_recs)
    return {"method": f"render {k} view(s) + ResNet-18", "views": k, "n_test": n,
            "accuracy": float((pred == target).mean()), "encode_or_render_ms": 1000 * render_s / n,
            "classify_ms": 1000 * cls_s / n, "total_ms": 1000 * (render_s + cls_s) / n,
            "note": f"{args.resolution}px, trained {args.epochs} epochs on {len(train_recs)} NeRFs x {k} views"}


def markdown(rows: Sequence[dict], meta: dict) -> str:
    lines = ["## Classifying NeRFs: from weights vs rendering + CNN (same run, this machine)", "",
             f"{meta['machine']}; torch threads {meta['torch_threads']}; architectures {', '.join(meta['archs'])}.", "",
             "| method | accuracy % | encode / render ms per NeRF | classify ms per NeRF | total ms per NeRF | note |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        f = lambda v: "–" if not np.isfinite(v) else f"{v:.2f}"  # noqa: E731
        lines.append(f"| {r['method']} | {100 * r['accuracy']:.1f} | {f(r['encode_or_render_ms'])} | "
                     f"{f(r['classify_ms'])} | {f(r['total_ms'])} | {r['note']} |")
    lines += ["", "Seed 003 Table VII (ShapenetRender, a GPU, ResNet-50; for reference): "
              + ", ".join(f"{k} {v} ms" for k, v in NF2VEC_TIMING_MS.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nerfs", type=Path, required=True)
    p.add_argument("--embeddings", type=Path, required=True)
    p.add_argument("--encoder", type=Path, default=None, help="encoder checkpoint (times encoding; without it stored test embeddings are used)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--arch", action="append", default=None, help="architectures to use (default: every one with train NeRFs)")
    p.add_argument("--views", type=int, nargs="+", default=[1, 9])
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--grid-res", type=int, default=48)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    from nfkit.embed.store import load_embeddings
    from nfkit.nerf.store import iter_nerfs

    progress = not a.no_progress
    records = list(iter_nerfs(a.nerfs))
    archs = sorted(a.arch or {r.arch.name for r in records if r.split == "train"})
    records = [r for r in records if r.arch.name in archs]
    train_recs = [r for r in records if r.split == "train"]
    test_recs = [r for r in records if r.split == "test"]
    es = load_embeddings(a.embeddings).select(arch=archs)
    classes = sorted({r.class_name for r in train_recs})
    test_keys = {(r.arch.name, r.key) for r in test_recs}
    test_es = es.select(split="test")
    test_es = test_es.take([i for i, (ar, k) in enumerate(zip(test_es.arch, test_es.keys, strict=True)) if (ar, k) in test_keys])
    rows = [weights_route(es.select(split="train"), es.select(split="val"), test_recs, a.encoder, test_es, classes, a.device, progress)]
    ring = max(a.views)
    for k in a.views:
        rows.append(render_route(train_recs, test_recs, classes, k, ring, a, a.device, progress))
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "torch_threads": torch.get_num_threads(), "archs": archs, "n_train": len(train_recs), "n_test": len(test_recs)}
    a.out.mkdir(parents=True, exist_ok=True)
    result = {"meta": meta, "rows": rows}
    (a.out / "classify_bench.json").write_text(json.dumps(result, indent=2))
    (a.out / "classify_bench.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    return result


if __name__ == "__main__":
    main()
