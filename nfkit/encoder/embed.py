"""``embed``: a frozen encoder applied to parameter graphs of any architecture.

One embedding shard per graph shard (same relative name under the output folder), so that a
later ``embed --arch hash-3n`` adds shards and recomputes nothing; a shard whose graph shard
and encoder are unchanged is skipped. Refused with one line:

- graphs whose vocabulary has codes the encoder was not trained on;
- NeRFs of an architecture the encoder was trained on, fitted from another init than the
  training NeRFs (their weights are not comparable: seed 003 §VIII shows that only NeRFs from
  one shared init share a weight space). ``allow_foreign_init=True`` embeds them anyway; expect
  embeddings that do not match those of the training init's NeRFs (classifiers and retrieval on
  them degrade toward chance).

Architectures the encoder never saw (the unseen variants) are embedded as they are: that is
what a GMN over parameter graphs is for.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nfkit.embed.store import META_STR, EmbeddingSet, read_embedding_shard, write_embedding_shard
from nfkit.encoder.checkpoint import Checkpoint, load_checkpoint
from nfkit.encoder.data import GraphBank
from nfkit.encoder.model import EncoderModel
from nfkit.encoder.refit import RENDER_DECODER, render_decoder
from nfkit.errors import IncompatibleError, NfkitError
from nfkit.graphs.store import GraphMeta, GraphShard, find_graph_shards
from nfkit.io.artifacts import ArtifactError, fingerprint_path
from nfkit.io.lock import output_folder

log = logging.getLogger(__name__)


@dataclass
class LoadedEncoder:
    """A frozen encoder and what it was trained on."""

    model: EncoderModel
    checkpoint: Checkpoint
    device: str

    @property
    def fingerprint(self) -> str:
        return self.checkpoint.encoder_fingerprint

    @property
    def kind(self) -> str:
        return self.checkpoint.config.encoder

    @property
    def embed_dim(self) -> int:
        return self.checkpoint.config.embed_dim


def load_encoder(path: str | Path, device: str = "cpu") -> LoadedEncoder:
    """The encoder (and decoder, when trained) of a checkpoint, in eval mode on ``device``."""
    ckpt = load_checkpoint(path)
    model = EncoderModel(ckpt.config, ckpt.nf2vec_width)
    model.encoder.load_state_dict(ckpt.state["encoder"])
    if model.decoder is not None and "decoder" in ckpt.state:
        model.decoder.load_state_dict(ckpt.state["decoder"])
    if model.decoder is not None and RENDER_DECODER in ckpt.state:
        # the decoder refitted to the frozen embeddings (nfkit/encoder/refit.py) decodes for
        # every later stage; the training decoder stays in the checkpoint for --resume
        model.decoder = render_decoder(ckpt.config)
        try:
            model.decoder.load_state_dict(ckpt.state[RENDER_DECODER])
        except RuntimeError as exc:
            raise ArtifactError(f"{path}: its render decoder does not match its settings ({str(exc).splitlines()[0]})") from None
    if model.siglip is not None and "siglip" in ckpt.state:
        model.siglip.load_state_dict(ckpt.state["siglip"])
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedEncoder(model, ckpt, device)


def check_compatible(enc: LoadedEncoder, metas: Sequence[GraphMeta], vocabulary: dict | None,
                     allow_foreign_init: bool, where: str) -> None:
    """Raise :class:`IncompatibleError` for graphs this encoder must not embed."""
    if vocabulary is not None and enc.checkpoint.vocabulary:
        trained = json.loads(enc.checkpoint.vocabulary)
        for table in ("node_types", "edge_types"):
            for name, code in vocabulary.get(table, {}).items():
                if trained.get(table, {}).get(name, code) != code:
                    raise IncompatibleError(f"{where}: graph code {table}.{name}={code} differs from the encoder's")
                if name not in trained.get(table, {}):
                    raise IncompatibleError(
                        f"{where}: graphs use {table[:-1].replace('_', ' ')} {name!r}, which the encoder "
                        f"{enc.fingerprint} was not trained on"
                    )
    trained_archs = enc.checkpoint.trained_archs
    by_fp = {v["fingerprint"]: (a, v) for a, v in trained_archs.items()}
    for m in metas:
        hit = by_fp.get(m.arch_fingerprint)
        if hit is None:
            continue  # an architecture the encoder never saw: fine
        name, info = hit
        if m.init_fingerprint != info["init_fingerprint"] and not allow_foreign_init:
            raise IncompatibleError(
                f"{where}: {m.arch} NeRF {m.class_name}/{m.object_id} was fitted from init "
                f"{m.init_fingerprint}, the encoder's {name} NeRFs from {info['init_fingerprint']}; "
                "weights from different inits are not comparable (--allow-foreign-init to embed anyway)"
            )
    if enc.kind == "nf2vec":
        names = {m.arch_fingerprint for m in metas} - set(by_fp)
        if names:
            raise IncompatibleError(f"{where}: the nf2vec encoder embeds only the architecture it was trained on")


@torch.no_grad()
def embed_bank(enc: LoadedEncoder, bank: GraphBank, chunk: int = 8) -> np.ndarray:
    """Embeddings of every graph of ``bank`` in ``bank.items`` order. -> (n, embed_dim)"""
    emb = enc.model.embed(bank, bank.items, chunk=chunk)
    return emb.float().cpu().numpy()


def _meta_arrays(metas: Sequence[GraphMeta]) -> dict[str, list[str]]:
    return {k: [str(getattr(m, k)) for m in metas] for k in META_STR}


def embed_records(enc: LoadedEncoder, records: Iterable, progress: bool = False,
                  allow_foreign_init: bool = False) -> EmbeddingSet:
    """Embeddings of NeRF records (``nfkit.nerf.store.NerfRecord``) straight from their weights
    (graphs built in memory; nothing rendered)."""
    from nfkit.graphs.build import nerf_to_graph
    from nfkit.graphs.nf2vec import nf2vec_rows

    recs = list(records)
    if not recs:
        raise NfkitError("no NeRFs to embed")
    rows, n2v = [], []
    for r in recs:
        if not all(np.isfinite(v).all() for v in r.params.values()):
            raise ArtifactError(f"{r.shard}: NeRF {r.key} has non-finite weights")
        m = GraphMeta(r.object_id, r.class_name, r.split, r.arch.name, r.arch.fingerprint(),
                      r.init_fingerprint, str(r.shard or ""), int(r.index))
        rows.append((nerf_to_graph(r.arch, r.params), m, r.arch))
        if enc.kind == "nf2vec":
            n2v.append(nf2vec_rows(r.arch, r.params, enc.checkpoint.nf2vec_width))
    metas = [row[1] for row in rows]
    check_compatible(enc, metas, None, allow_foreign_init, "NeRFs")
    bank = GraphBank(rows, n2v if n2v else None)
    emb = embed_bank(enc, bank)
    order = [bank.meta(a, r) for a, r in bank.items]
    return EmbeddingSet(
        embedding=emb,
        meta={k: np.array(v, dtype=object) for k, v in _meta_arrays(order).items()},
        source_row=np.array([m.source_row for m in order], dtype=np.int64),
        encoder_fingerprint=enc.fingerprint,
        encoder_kind=enc.kind,
    )


@dataclass
class EmbedSummary:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    n_embedded: int = 0
    seconds: float = 0.0
    per_arch: dict[str, int] = field(default_factory=dict)


def _up_to_date(out: Path, source_fp: str, enc_fp: str, n_rows: int) -> bool:
    if not out.is_file():
        return False
    try:
        es = read_embedding_shard(out)
    except ArtifactError:
        return False
    return es.encoder_fingerprint == enc_fp and next(iter(es.sources.values()), "") == source_fp and len(es) == n_rows


def embed_graphs(
    graphs: str | Path | Iterable[str | Path],
    encoder: str | Path,
    out: str | Path,
    archs: Iterable[str] | None = None,
    allow_foreign_init: bool = False,
    force: bool = False,
    device: str = "cpu",
    chunk: int = 8,
    shard_index: int = 0,
    num_shards: int = 1,
    progress: bool = True,
) -> EmbedSummary:
    """Embed every graph shard under ``graphs`` (optionally only some architectures) into
    ``out``, one embedding shard per graph shard (sharded over workers by
    ``shard_index``/``num_shards``); a corrupt shard is reported in ``failed`` and the others
    are embedded. Incompatible graphs (another init, unknown codes) stop the run."""
    t0 = time.perf_counter()
    enc = load_encoder(encoder, device)
    roots = [Path(graphs)] if isinstance(graphs, (str, Path)) else [Path(g) for g in graphs]
    files = find_graph_shards(roots)
    if not files:
        raise NfkitError(f"{', '.join(map(str, roots))}: no graph shards found (run `nfkit build-graphs` first)")
    keep = None if archs is None else {a.lower() for a in archs}
    out = Path(out)
    with output_folder(out, "--out", shard=(shard_index, num_shards)):  # refused while another run writes there
        return _embed_into(enc, encoder, roots, files, keep, out, allow_foreign_init, force, chunk, shard_index,
                           num_shards, progress, t0)


def _embed_into(enc, encoder, roots, files, keep, out, allow_foreign_init, force, chunk, shard_index, num_shards,
                progress, t0) -> EmbedSummary:
    from nfkit.io.shards import plan_work, run_work

    summary = EmbedSummary()
    work: list[tuple[Path, Path, list[int], str]] = []
    done: list[str] = []
    for path in files:
        root = next((r for r in roots if r.is_dir() and r in path.parents), path.parent)
        target = out / path.relative_to(root)
        try:
            shard = GraphShard(path)
        except NfkitError as exc:
            summary.failed.append(str(exc).splitlines()[0])
            continue
        rows = [i for i, m in enumerate(shard.meta) if keep is None or m.arch.lower() in keep]
        if not rows:
            continue
        source_fp = fingerprint_path(path)
        work.append((path, target, rows, source_fp))
        if not force and _up_to_date(target, source_fp, enc.fingerprint, len(rows)):
            done.append(str(path))
    plan = plan_work(work, key=lambda w: str(w[0]), done=done, shard_index=shard_index, num_shards=num_shards)
    summary.skipped = [w[1] for w in plan.selected if str(w[0]) in set(done)]

    def process(batch: list[tuple[Path, Path, list[int], str]]) -> int:
        path, target, rows, source_fp = batch[0]
        try:
            _embed_shard(enc, path, target, rows, source_fp, encoder, chunk, allow_foreign_init, summary)
        except IncompatibleError:
            raise
        except NfkitError as exc:
            summary.failed.append(str(exc).splitlines()[0])
            return 0
        return len(rows)

    for _ in run_work(plan, process, progress=progress, desc="embed", unit="NeRF", weight=lambda w: len(w[2])):
        pass
    summary.seconds = time.perf_counter() - t0
    return summary


def _embed_shard(enc: LoadedEncoder, path: Path, target: Path, rows: list[int], source_fp: str, encoder,
                 chunk: int, allow_foreign_init: bool, summary: EmbedSummary) -> None:
    """Embed rows ``rows`` of graph shard ``path`` (content fingerprint ``source_fp``) into the
    embedding shard ``target``."""
    shard = GraphShard(path)
    metas = [shard.meta[i] for i in rows]
    vocab = json.loads(shard.attrs["vocabulary"]) if "vocabulary" in shard.attrs else None
    check_compatible(enc, metas, vocab, allow_foreign_init, str(path))
    if enc.kind == "nf2vec" and shard.nf2vec is None:
        raise NfkitError(f"{path}: no nf2vec rows; rebuild with `nfkit build-graphs --nf2vec`")
    n2v = [np.array(shard.nf2vec[i]) for i in rows] if enc.kind == "nf2vec" else None
    bank = GraphBank([(shard.graph(i), shard.meta[i], shard.spec(i)) for i in rows], n2v)
    shard.release()
    emb = embed_bank(enc, bank, chunk)
    order = [bank.meta(a, r) for a, r in bank.items]
    write_embedding_shard(
        target, emb, _meta_arrays(order), [m.source_row for m in order],
        encoder_fingerprint=enc.fingerprint, encoder_kind=enc.kind,
        source_shard=str(path), source_fingerprint=source_fp,
        config={"encoder": str(encoder), "chunk": chunk, "allow_foreign_init": allow_foreign_init},
        inputs={"graphs": source_fp, "encoder": enc.fingerprint},
        input_paths={"graphs": [path]},  # the encoder is checked by its state fingerprint, not its file
    )
    summary.written.append(target)
    summary.n_embedded += len(order)
    for m in order:
        summary.per_arch[m.arch] = summary.per_arch.get(m.arch, 0) + 1
