"""How good is an encoder: decoder PSNR on test NeRFs (with its floor), the architecture /
class k-NN numbers and the t-SNE of the test embeddings (seed 000 §4.1, Fig. 3).

``python -m nfkit.encoder.evaluate --encoder E --embeddings DIR --nerfs DIR --out DIR``
writes ``encoder_eval.json``, ``encoder_eval.md`` and ``tsne.png``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from nfkit.embed.store import EmbeddingSet, load_embeddings
from nfkit.eval.embedding_space import arch_knn_accuracy, cross_arch_class_knn, spread_ratio


@torch.no_grad()
def decoder_psnr(enc, es: EmbeddingSet, records, resolution: int = 64, n_samples: int = 128,
                 grid_res: int = 64, views: int = 2, seed: int = 0) -> dict:
    """Mean PSNR of the decoder (from each NeRF's embedding) against the NeRF itself on
    turntable views (black background, both through the NeRF's occupancy grid), and the floor:
    the same with another object's embedding. Also the foreground-only PSNR."""
    from nfkit.data.cameras import camera_rays
    from nfkit.encoder.train import image_psnr
    from nfkit.nerf.radiance import ParamField
    from nfkit.render.rays import turntable_cameras
    from nfkit.render.renderer import build_grid, default_step_size, render_batch

    index = {(a, c, o): i for i, (a, c, o) in enumerate(zip(es.arch, es.class_name, es.object_id, strict=True))}
    c2w = turntable_cameras(views, 30.0, 3.4)
    focal = 0.5 * resolution / math.tan(0.4)
    o, d = camera_rays(c2w, resolution, resolution, focal)
    o, d = o.reshape(1, -1, 3).contiguous(), d.reshape(1, -1, 3).contiguous()
    rows = [index[(r.arch.name, r.class_name, r.object_id)] for r in records]
    keys = es.keys
    gen = torch.Generator().manual_seed(seed)
    psnr, floor, fg = [], [], []
    per_arch: dict[str, list[float]] = {}
    for rec, row in zip(records, rows, strict=True):
        params = {k: torch.from_numpy(np.asarray(v, np.float32))[None] for k, v in rec.params.items()}
        grid = build_grid(rec.arch, params, grid_res, default_step_size(n_samples), generator=gen, sin=rec.sin)
        teacher = render_batch(ParamField(rec.arch, params, rec.sin), o, d, n_samples, grid).rgb[0]
        emb = torch.from_numpy(es.embedding[row])[None]
        others = [j for j in rows if keys[j] != keys[row]]
        other = torch.from_numpy(es.embedding[others[(row * 7919) % len(others)]])[None] if others else emb
        pred = render_batch(enc.model.decoder.field(emb), o, d, n_samples, grid).rgb[0]
        base = render_batch(enc.model.decoder.field(other), o, d, n_samples, grid).rgb[0]
        p = image_psnr(pred, teacher)
        psnr.append(p)
        floor.append(image_psnr(base, teacher))
        per_arch.setdefault(rec.arch.name, []).append(p)
        mask = teacher.max(dim=-1).values > 0.02
        if mask.any():
            fg.append(image_psnr(pred[mask], teacher[mask]))
    return {
        "decoder_psnr": float(np.mean(psnr)),
        "decoder_psnr_floor": float(np.mean(floor)),
        "decoder_psnr_fg": float(np.mean(fg)) if fg else float("nan"),
        "decoder_psnr_per_arch": {a: float(np.mean(v)) for a, v in sorted(per_arch.items())},
        "n_nerfs": len(records),
    }


def space_metrics(es: EmbeddingSet, trained: list[str], split: str = "test", k: int = 5,
                  gallery_split: str = "train") -> dict:
    """What the embedding space knows, on the architectures the encoder was trained on:

    - ``arch_knn_acc``: leave-one-out k-NN accuracy of the architecture over every embedding;
    - ``cross_arch_class_knn_acc``: class of each ``split`` embedding from the
      ``gallery_split`` embeddings of the *other* architectures;
    - ``within_arch_class_knn_acc``: the same from the gallery of its own architecture;
    - per unseen architecture: class of its ``split`` embeddings from the trained
      architectures' gallery;
    - ``spread``: how much the embeddings of one architecture vary at all."""
    from nfkit.eval.embedding_space import knn_predict

    fam = es.select(arch=[a for a in trained if a in es.archs()])
    q, g = fam.select(split=split), fam.select(split=gallery_split)
    out: dict = {"split": split, "gallery_split": gallery_split, "k": k, "n_queries": len(q), "n_gallery": len(g),
                 "archs": fam.archs(), "classes": len(fam.classes()), "class_chance": 1.0 / max(len(fam.classes()), 1)}
    if len(fam.archs()) >= 2:
        out["arch_knn_acc"] = arch_knn_accuracy(fam.embedding, fam.arch, k)
        out["arch_chance"] = 1.0 / len(fam.archs())
    if len(q) and len(g):
        both = _stack(q, g)
        qm = np.arange(len(both)) < len(q)
        if len(fam.archs()) >= 2:
            out["cross_arch_class_knn_acc"] = cross_arch_class_knn(both.embedding, both.class_name, both.arch, k,
                                                                   query_mask=qm, gallery_mask=~qm)
        out["within_arch_class_knn_acc"] = {}
        for a in fam.archs():
            qa, ga = q.select(arch=a), g.select(arch=a)
            if len(qa) and len(ga):
                pred = knn_predict(ga.embedding, ga.class_name, qa.embedding, k)
                out["within_arch_class_knn_acc"][a] = float(np.mean(pred == qa.class_name.astype(str)))
    out["spread"] = {a: spread_ratio(fam.select(arch=a).embedding) for a in fam.archs()}
    out["unseen"] = {}
    for a in [a for a in es.archs() if a not in trained]:
        u = es.select(arch=a, split=split)
        if not len(u) or not len(g):
            continue
        both = _stack(u, g)
        qm = np.arange(len(both)) < len(u)
        out["unseen"][a] = {
            "n": len(u),
            "class_knn_acc_vs_trained_archs": cross_arch_class_knn(both.embedding, both.class_name, both.arch, k,
                                                                   query_mask=qm, gallery_mask=~qm),
        }
    return out


def _stack(a: EmbeddingSet, b: EmbeddingSet) -> EmbeddingSet:
    return EmbeddingSet(np.concatenate([a.embedding, b.embedding]),
                        {key: np.concatenate([a.meta[key], b.meta[key]]) for key in a.meta},
                        np.concatenate([a.source_row, b.source_row]))


def tsne_picture(es: EmbeddingSet, path: Path, title: str, split: str = "test") -> Path:
    from nfkit.eval.plots import scatter_by_class, tsne_2d

    test = es.select(split=split)
    xy = tsne_2d(test.embedding, seed=0, perplexity=15.0)
    return scatter_by_class(xy, test.class_name, test.arch, path, title=title)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", type=Path, required=True)
    ap.add_argument("--embeddings", type=Path, required=True)
    ap.add_argument("--nerfs", type=Path, default=None, help="NeRF shards, for the decoder PSNR (skipped without)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--label", default="")
    ap.add_argument("--split", default="test")
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args(argv)
    from nfkit.encoder.embed import load_encoder
    from nfkit.nerf.store import iter_nerfs

    args.out.mkdir(parents=True, exist_ok=True)
    enc = load_encoder(args.encoder)
    es = load_embeddings(args.embeddings)
    result = {"label": args.label, "encoder": str(args.encoder), "loss": enc.checkpoint.config.loss}
    trained = sorted(enc.checkpoint.trained_archs)
    result.update(space_metrics(es, trained, args.split, args.k))
    if args.nerfs is not None and enc.model.decoder is not None:
        wanted = {(a, c, o) for a, c, o, s in zip(es.arch, es.class_name, es.object_id, es.split, strict=True)
                  if s == args.split and a in trained}
        recs = [r for r in iter_nerfs(args.nerfs) if (r.arch.name, r.class_name, r.object_id) in wanted]
        if recs:
            result.update(decoder_psnr(enc, es, recs))
    shown = es.select(arch=trained, split=args.split)
    if len(shown) >= 3:
        tsne_picture(shown, args.out / "tsne.png", f"{args.label or enc.checkpoint.config.loss}: {args.split} embeddings",
                     split=args.split)
    (args.out / "encoder_eval.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
