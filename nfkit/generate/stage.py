"""The ``generate gan`` stage: a latent GAN per class, samples, their quality, renders, NeRFs.

Outputs in ``out/`` (default ``<workspace>/generate``)::

    gan/<class>.h5            latent-gan artifact per class (data_specs/latent-gan-v1.md);
                              reused when its config, encoder and training rows are unchanged
    generated.h5              embedding-shard of the samples (split "generated";
                              data_specs/generated-embeddings.md): load_embeddings reads it
    quality.md, quality.json  the quality table (nfkit.eval.generation) with ceiling and floor;
                              with ``clip_check``, whether the renders read as their class
                              (nfkit.generate.clip_check)
    views/<class>/<id>.png    decoder views of the first ``render`` samples of each class
    views/<class>/<id>.gif    their turntable
    nerfs/<arch>/generated.h5 with ``to_nerf``: those samples fitted as NeRFs of ``arch``
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nfkit.embed.store import EmbeddingSet, load_embeddings, write_embedding_shard
from nfkit.errors import IncompatibleError, UserError
from nfkit.eval.generation import (
    QualityRow,
    gaussian_floor,
    measure,
    quality_markdown,
    rows_to_json,
)
from nfkit.generate.gan import GanConfig, TrainedGan, load_gan, sample_gan, save_gan, train_gan
from nfkit.io.artifacts import ArtifactError, atomic_path, fingerprint_bytes, fingerprint_path
from nfkit.io.lock import locks_output

log = logging.getLogger(__name__)

GENERATED_SPLIT = "generated"


def generated_set(embedding: np.ndarray, class_names: Sequence[str], object_ids: Sequence[str], arch: str,
                  like: EmbeddingSet | None = None, *, encoder_fingerprint: str = "",
                  encoder_kind: str = "") -> EmbeddingSet:
    """Generated rows as an :class:`EmbeddingSet` of the encoder of ``like`` (or of the encoder
    given by fingerprint and kind). (n, D) -> set."""
    if like is not None:
        encoder_fingerprint, encoder_kind = like.encoder_fingerprint, like.encoder_kind
    n = len(embedding)
    meta = {
        "object_id": np.array(list(object_ids), dtype=object),
        "class_name": np.array(list(class_names), dtype=object),
        "split": np.array([GENERATED_SPLIT] * n, dtype=object),
        "arch": np.array([arch] * n, dtype=object),
    }
    return EmbeddingSet(np.asarray(embedding, np.float32), meta, np.arange(n, dtype=np.int64),
                        encoder_fingerprint, encoder_kind)


def write_generated(path: str | Path, gen: EmbeddingSet, source_shard: str, config: dict,
                    inputs: dict[str, str]) -> Path:
    """Write generated rows as an embedding shard (``data_specs/generated-embeddings.md``)."""
    return write_embedding_shard(
        path, gen.embedding, {k: list(v) for k, v in gen.meta.items()}, list(gen.source_row),
        encoder_fingerprint=gen.encoder_fingerprint, encoder_kind=gen.encoder_kind,
        source_shard=source_shard, config=config, inputs=inputs,
    )


def _rows_fingerprint(x: np.ndarray) -> str:
    return fingerprint_bytes(np.ascontiguousarray(x, dtype="<f4").tobytes())


def _stored_gan(path: Path, rows_fp: str, cfg: GanConfig, es: EmbeddingSet, force: bool, device: str) -> TrainedGan | None:
    """The stored GAN of a class when its config, encoder and training rows are unchanged."""
    if not path.is_file() or force:
        return None
    try:
        from nfkit.io.artifacts import read_header

        old = load_gan(path, device)
        same_rows = read_header(path)["inputs"].get("train_rows") == rows_fp
        if old.config == cfg and old.encoder_fingerprint == es.encoder_fingerprint and same_rows:
            return old
    except ArtifactError as exc:
        log.warning("%s: %s; retraining", path, exc)
    return None


def _train_and_save(path: str, x: np.ndarray, cfg: GanConfig, class_name: str, encoder_fingerprint: str,
                    archs: list[str], rows_fp: str, device: str = "cpu", progress: bool = False) -> TrainedGan:
    """Train one class's GAN and write it (also the body of a worker process)."""
    gan = train_gan(x, cfg, class_name, encoder_fingerprint, archs, device=device, progress=progress)
    save_gan(Path(path), gan, {"train_rows": rows_fp})
    return gan


def gan_workers(device: str, pending: int) -> int:
    """Processes that train class GANs side by side: a GAN's tiny products run best on one
    thread (``train_gan``), so on a CPU every core can take a class of its own."""
    import os

    if str(device) != "cpu" or pending < 2:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
                      pending))


def train_class_gans(out: Path, wanted: Sequence[str], train: EmbeddingSet, cfg: GanConfig, es: EmbeddingSet,
                     archs: list[str], force: bool, device: str, progress: bool,
                     workers: int | None = None) -> tuple[dict[str, TrainedGan], list[str], list[str]]:
    """(class -> GAN, trained, reused): stored GANs are reused; the others are trained, one
    process per core on a CPU (each class's GAN is seeded by its config, so the result is the
    same as training them one after the other)."""
    gans: dict[str, TrainedGan] = {}
    pending = []
    for c in wanted:
        x = train.select(class_name=c).embedding
        rows_fp = _rows_fingerprint(x)
        path = out / "gan" / f"{c}.h5"
        old = _stored_gan(path, rows_fp, cfg, es, force, device)
        if old is not None:
            gans[c] = old
        else:
            pending.append((c, x, rows_fp, path))
    n = gan_workers(device, len(pending)) if workers is None else max(1, min(workers, len(pending)))
    if n <= 1:
        for c, x, rows_fp, path in pending:
            gans[c] = _train_and_save(str(path), x, cfg, c, es.encoder_fingerprint, archs, rows_fp, device, progress)
    elif pending:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        from tqdm.auto import tqdm

        log.info("training %d class GANs in %d processes", len(pending), n)
        pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = {pool.submit(_train_and_save, str(path), x, cfg, c, es.encoder_fingerprint, archs, rows_fp): (c, path)
                       for c, x, rows_fp, path in pending}
            bar = tqdm(total=len(futures), desc="class GANs", unit="class", disable=not progress, leave=False)
            for fut in as_completed(futures):
                c, path = futures[fut]
                fut.result()
                gans[c] = load_gan(path, device)
                bar.update(1)
            bar.close()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    trained = [c for c, *_ in pending]
    return {c: gans[c] for c in wanted}, trained, [c for c in wanted if c not in trained]


@dataclass
class GanSummary:
    out: Path
    classes: list[str]
    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    generated: Path | None = None
    rows: list[QualityRow] = field(default_factory=list)
    views: list[Path] = field(default_factory=list)
    nerfs: Path | None = None
    nerf_psnr: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    clip_rows: list = field(default_factory=list)  # ClipCheckRow, with clip_check
    clip_md: str = ""


def _accuracy(clf, es: EmbeddingSet) -> float:
    if clf is None or not len(es):
        return float("nan")
    from nfkit.tasks.classifier import predict

    pred, _ = predict(clf, es)
    return float(np.mean(pred == clf.class_index(es.class_name)))


def quality_rows(gans: dict[str, TrainedGan], train: EmbeddingSet, test: EmbeddingSet, clf=None,
                 distance: str = "cosine", seed: int = 0) -> tuple[list[QualityRow], list[str]]:
    """Per class: generated / ceiling / floor against the class's held-out embeddings ``test``
    (``run_gan`` passes val + test).

    Each source contributes as many samples as the class has training embeddings, so coverage
    (which grows with the number of samples) compares like with like.
    """
    rows, notes = [], []
    for k, (c, gan) in enumerate(sorted(gans.items())):
        tr = train.select(class_name=c)
        ref = test.select(class_name=c)
        if not len(ref):
            notes.append(f"{c}: no held-out (val / test) embeddings, no quality figures")
            continue
        n = len(tr)
        sources = {
            "generated": sample_gan(gan, n, seed=10_000 + seed + k),
            "train (ceiling)": tr.embedding,
            "noise (floor)": gaussian_floor(tr.embedding, n, seed=seed + k),
        }
        for name, x in sources.items():
            acc = _accuracy(clf, generated_set(x, [c] * n, [f"{name}-{i}" for i in range(n)], "", train))
            rows.append(measure(c, name, x, ref.embedding, acc, distance))
    return rows, notes


@locks_output()
def run_gan(
    embeddings: str | Path | Sequence[str | Path],
    out: str | Path,
    config: GanConfig,
    classes: Sequence[str] | None = None,
    arch: Sequence[str] | None = None,
    n_samples: int = 32,
    classifier: str | Path | None = None,
    encoder: str | Path | None = None,
    render: int = 4,
    view_settings=None,
    to_nerf: str | None = None,
    init: str | Path | None = None,
    nerfs_dir: str | Path | None = None,
    fit_config=None,
    distance: str = "cosine",
    force: bool = False,
    device: str = "cpu",
    progress: bool = False,
    clip_check: int = 0,
    clip=None,
) -> GanSummary:
    """Train (or reuse) a GAN per class on its train-split embeddings, write ``n_samples``
    generated embeddings per class, measure them, render the first ``render`` per class through
    the decoder of ``encoder`` and, with ``to_nerf``, fit them as NeRFs of that architecture.
    With ``clip_check`` > 0 and ``clip`` (a loaded CLIP model), that many embeddings per class of
    each source (generated, training, noise) are decoded, rendered and classified by CLIP
    (``nfkit/generate/clip_check.py``)."""
    if n_samples < 1 or render < 0 or clip_check < 0:
        raise UserError(f"--samples must be >= 1, --render and --clip-check >= 0, got {n_samples}, {render}, {clip_check}")
    if clip_check and clip is None:
        raise UserError("--clip-check needs a CLIP model (the workspace's clip/maps.h5, or --clip-model)")
    es = load_embeddings(embeddings)
    if arch:
        es = es.select(arch=list(arch))
        if not len(es):
            raise UserError(f"no embeddings of architecture {', '.join(arch)}")
    # the reference set of the quality table: every held-out embedding (val + test; the GANs see
    # neither), twice the test split alone, which holds one object per class in the demo
    train, test = es.select(split="train"), es.select(split=["val", "test"])
    if not len(train):
        raise UserError("no train-split embeddings: the latent GANs train on split 'train'")
    wanted = sorted(train.classes()) if not classes else list(classes)
    missing = [c for c in wanted if c not in train.classes()]
    if missing:
        raise UserError(f"no train-split embeddings of class {', '.join(missing)}; classes: {', '.join(train.classes())}")
    if (render or to_nerf or clip_check) and encoder is None:
        raise UserError("rendering, --to-nerf or --clip-check needs the encoder checkpoint whose decoder decodes the embeddings")
    dec = load_decoder(encoder, es.encoder_fingerprint).model.decoder if (render or to_nerf or clip_check) else None
    init_obj = None
    if to_nerf:
        if not render:
            raise UserError("--to-nerf fits the rendered samples: give --render >= 1")
        init_obj = to_nerf_init(to_nerf, init, nerfs_dir, encoder)
    clf = _classifier(classifier, es)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = GanSummary(out, wanted)
    archs = train.archs()
    label = "+".join(archs) if len(archs) > 1 else archs[0]
    gans, summary.trained, summary.reused = train_class_gans(out, wanted, train, config, es, archs, force, device, progress)
    emb, cls, ids = [], [], []
    for c in wanted:
        emb.append(sample_gan(gans[c], n_samples, seed=config.seed))
        cls += [c] * n_samples
        ids += [f"gan-{i:04d}" for i in range(n_samples)]
    gen = generated_set(np.concatenate(emb), cls, ids, label, es)
    summary.generated = write_generated(
        out / "generated.h5", gen, str(out / "gan"), {"gan": config.to_dict(), "n_samples": n_samples, "arch": label},
        {"encoder": es.encoder_fingerprint, **{f"gan/{c}": fingerprint_path(out / "gan" / f"{c}.h5") for c in wanted}},
    )
    summary.rows, summary.notes = quality_rows(gans, train, test, clf, distance, config.seed)
    if clf is None:
        summary.notes.append("no classifier: accuracy not measured (run `nfkit classify`, or give --classifier)")
    if clip_check:
        summary.clip_rows, summary.clip_md = _clip_check(dec, clip, gen, train, wanted, clip_check, config.seed, progress)
    _write_quality(out, summary, distance)
    if render:
        summary.views = _render(dec, gen, wanted, render, out / "views", view_settings, progress)
    if to_nerf:
        rows = [int(i) for c in wanted for i in np.flatnonzero(gen.class_name == c)[:render]]
        summary.nerfs, summary.nerf_psnr = fit_generated(dec, gen, rows, init_obj, fit_config,
                                                         out / "nerfs" / init_obj.spec.name / "generated.h5",
                                                         summary.generated, "generate gan", device, progress)
    return summary


def _clip_check(decoder, clip, gen: EmbeddingSet, train: EmbeddingSet, wanted: Sequence[str], n: int, seed: int,
                progress: bool):
    """The CLIP check of ``n`` embeddings per class and source. -> (rows, Markdown)"""
    from nfkit.clip.zero_shot import text_classifier
    from nfkit.generate.clip_check import CHECK_VIEWS, clip_check, clip_check_markdown, spread_rows

    labels = sorted(train.classes())  # every class is a candidate, also those without a GAN here
    sources: dict[str, dict[str, np.ndarray]] = {"generated": {}, "train (ceiling)": {}, "noise (floor)": {}}
    for k, c in enumerate(wanted):
        tr = train.select(class_name=c).embedding
        sources["generated"][c] = gen.select(class_name=c).embedding[:n]
        sources["train (ceiling)"][c] = tr[spread_rows(len(tr), n)]
        sources["noise (floor)"][c] = gaussian_floor(tr, n, seed=20_000 + seed + k)
    rows = clip_check(decoder, clip, text_classifier(clip, labels), labels, sources, CHECK_VIEWS, progress)
    return rows, clip_check_markdown(rows, clip.name, CHECK_VIEWS, len(labels))


def _write_quality(out: Path, s: GanSummary, distance: str) -> None:
    md = quality_markdown(s.rows, distance, "## Quality of the generated embeddings")
    if s.notes:
        md += "\n" + "\n".join(f"- {n}" for n in s.notes) + "\n"
    if s.clip_md:
        md += "\n" + s.clip_md
    with atomic_path(out / "quality.md") as tmp:
        tmp.write_text(md)
    doc = {"distance": distance, "rows": rows_to_json(s.rows), "notes": s.notes}
    if s.clip_rows:
        doc["clip_check"] = [r.to_json() for r in s.clip_rows]
    with atomic_path(out / "quality.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=1))


def load_decoder(encoder, encoder_fingerprint: str, what: str = "the embeddings come from"):
    """The encoder checkpoint ``encoder`` (a :class:`~nfkit.encoder.embed.LoadedEncoder`, on the
    CPU) that embedded ``encoder_fingerprint``'s embeddings and has a decoder; a missing file, an
    encoder without decoder or another encoder is a one-line error (``what`` starts it)."""
    from nfkit.encoder.embed import load_encoder

    if not Path(encoder).is_file():
        raise UserError(f"{encoder}: no such encoder checkpoint (run `nfkit pretrain-encoder`, or give --encoder)")
    enc = load_encoder(Path(encoder))
    if enc.model.decoder is None:
        raise UserError(f"{encoder}: trained with loss c, it has no decoder to render embeddings with")
    if enc.fingerprint != encoder_fingerprint:
        raise IncompatibleError(
            f"{what} encoder {encoder_fingerprint or '?'}, {encoder} is encoder {enc.fingerprint}; "
            "give the encoder that embedded them"
        )
    return enc


def check_encoder_init(encoder, init) -> None:
    """IncompatibleError when ``init`` is of an architecture the encoder was trained on but is
    not the shared init of its NeRFs (the NeRFs fitted from it would not embed)."""
    from nfkit.encoder.checkpoint import load_checkpoint

    trained = load_checkpoint(encoder).trained_archs
    for name, info in trained.items():
        if info.get("fingerprint") == init.spec.fingerprint() and info.get("init_fingerprint") != init.fingerprint:
            raise IncompatibleError(
                f"init {init.path} ({init.fingerprint}) is not the init of the encoder's {name} NeRFs "
                f"({info.get('init_fingerprint')}); the NeRFs written would not embed"
            )


def to_nerf_init(arch: str, init: str | Path | None, nerfs_dir: str | Path | None, encoder):
    """The shared init ``--to-nerf ARCH`` fits from (``init``, else
    ``<nerfs_dir>/inits/ARCH.init.h5``), checked against the encoder's NeRFs of ``arch``."""
    from nfkit.generate.to_nerf import find_init

    init_obj = find_init(arch, init, Path(nerfs_dir) if nerfs_dir else Path("nerfs"))
    check_encoder_init(encoder, init_obj)
    return init_obj


def _classifier(path, es: EmbeddingSet):
    if path is None:
        return None
    from nfkit.tasks.classifier import check_encoder, load_classifier

    if not Path(path).is_file():
        raise UserError(f"{path}: no such classifier artifact (run `nfkit classify`, or give --classifier)")
    clf = load_classifier(path)
    check_encoder(clf, es, what="the embeddings")
    return clf


def _render(decoder, gen: EmbeddingSet, classes, count: int, folder: Path, settings, progress) -> list[Path]:
    from tqdm.auto import tqdm

    from nfkit.generate.render import render_sample

    jobs = [(c, i) for c in classes for i in np.flatnonzero(gen.class_name == c)[:count]]
    return [render_sample(decoder, gen.embedding[i], folder / c / str(gen.object_id[i]), settings)[0]
            for c, i in tqdm(jobs, desc="render", unit="sample", disable=not progress, leave=False)]


def fit_generated(decoder, gen: EmbeddingSet, rows: Sequence[int], init, fit_config, path: Path, source: Path,
                  origin: str, device: str = "cpu", progress: bool = False) -> tuple[Path, list[float]]:
    """Fit the rows ``rows`` of ``gen`` as NeRFs of ``init``'s architecture (from that shared
    init) to their decoder views; write them as a nerf-shard at ``path`` (split ``generated``,
    ``source`` = the generated embedding shard, config ``from`` = ``origin``). Returns the path
    and each NeRF's held-out PSNR."""
    from nfkit.fit.config import resolve_config
    from nfkit.generate.to_nerf import embeddings_to_nerfs
    from nfkit.nerf.store import write_nerf_shard

    cfg = fit_config or resolve_config("cpu")
    rows = [int(i) for i in rows]
    names = [(str(gen.class_name[i]), str(gen.object_id[i])) for i in rows]
    records = embeddings_to_nerfs(decoder, gen.embedding[rows], names, init, cfg, source=str(source),
                                  device=device, progress=progress)
    out = write_nerf_shard(path, records, config={"fit": cfg.resolved(device=device).to_dict(), "from": origin},
                           inputs={"init": init.fingerprint})
    return out, [r.psnr for r in records]


__all__ = [
    "GENERATED_SPLIT",
    "GanSummary",
    "generated_set",
    "write_generated",
    "quality_rows",
    "run_gan",
    "load_decoder",
    "check_encoder_init",
    "to_nerf_init",
    "fit_generated",
]
