"""Retrieval stage: instance / class tables on tiny embedding folders, --query-nerf, CLI errors."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.embed.store import load_embeddings
from nfkit.errors import IncompatibleError, UserError
from nfkit.tasks.query import search_gallery
from nfkit.tasks.retrieve import class_retrieval, instance_retrieval, resolve_metrics, run_retrieve

from .conftest import make_embeddings
from .test_classify import _install_fake_encoder, write_tiny_nerfs


def test_aligned_vs_shifted_instance_retrieval(tmp_path):
    aligned = load_embeddings(make_embeddings(tmp_path / "a", arch_shift=0.0, noise=0.05)).select(split="test")
    shifted = load_embeddings(make_embeddings(tmp_path / "s", arch_shift=8.0, noise=0.05)).select(split="test")
    a = instance_retrieval(aligned, (1, 5))
    s = instance_retrieval(shifted, (1, 5))
    assert list(a)[0] == "ALL/ALL" and "mlp/tri" in a and "tri/mlp" in a and "mlp/mlp" not in a
    assert a["ALL/ALL"]["hit@1"] == 1.0 and a["mlp/hash"]["hit@1"] == 1.0
    # shifted by architecture: the query's own architecture crowds the ALL/ALL neighbourhood
    assert s["ALL/ALL"]["hit@1"] == 0.0
    assert a["ALL/ALL"]["n_queries"] == len(aligned)


def test_all_all_counts_only_other_architectures(tmp_path):
    es = load_embeddings(make_embeddings(tmp_path / "e", archs=("mlp", "tri"), unseen=())).select(split="test")
    # an object present only in mlp has no match in ALL/ALL and is skipped
    keep = np.flatnonzero(~((es.arch == "tri") & (es.object_id == "aitest0")))
    out = instance_retrieval(es.take(keep), (1,))
    assert out["ALL/ALL"]["no_match"] == 1.0
    assert out["ALL/ALL"]["n_queries"] == len(keep) - 1


def test_class_retrieval_per_arch_and_all(emb_dir):
    es = load_embeddings(emb_dir).select(split="test")
    out = class_retrieval(es, (1, 2, 20))
    assert set(out) == {"ALL", "mlp", "tri", "hash", "mlp-2l"}
    for s in out.values():
        assert s["hit@1"] <= s["hit@2"] <= s["hit@20"]
    # per architecture each class has 3 test objects: 2 relevant items, 11 in the gallery
    assert out["mlp"]["precision@20"] == pytest.approx(2 / 11)


def test_resolve_metrics():
    assert resolve_metrics("auto") == ("cosine", "l2")
    assert resolve_metrics("L2") == ("l2", "l2")
    with pytest.raises(UserError, match="expected auto, cosine or l2"):
        resolve_metrics("dot")


def test_run_retrieve_writes_tables(emb_dir, tmp_path):
    res = run_retrieve(emb_dir, tmp_path / "r", ks=(10, 1))
    assert res.ks == (1, 10)
    data = json.loads((tmp_path / "r" / "retrieve.json").read_text())
    assert data["metric"] == {"instance": "cosine", "class": "l2"}
    md = (tmp_path / "r" / "retrieve.md").read_text()
    assert "| ALL/ALL |" in md and "Class hit rate@k" in md


def test_search_gallery_excludes_self_and_checks_encoder(emb_dir, tmp_path):
    es = load_embeddings(emb_dir).select(split="test")
    q = es.take([0])
    hits = search_gallery(q, es, k=3)[0]
    assert len(hits) == 3 and all((h.arch, h.key) != (q.arch[0], q.keys[0]) for h in hits)
    other = load_embeddings(make_embeddings(tmp_path / "o", encoder="enc5"))
    with pytest.raises(IncompatibleError, match="gallery"):
        search_gallery(other.take([0]), es)


def test_cli_query_nerf_prints_and_draws(emb_dir, tmp_path, monkeypatch):
    es = load_embeddings(emb_dir)
    centres = {c: es.select(class_name=c, split="test").embedding.mean(0) for c in es.classes()}
    _install_fake_encoder(monkeypatch, centres)
    shard = write_tiny_nerfs(tmp_path / "q" / "q.h5", ["chair"])
    enc = tmp_path / "enc.h5"
    enc.write_bytes(b"stand-in")
    out = tmp_path / "ret"
    r = CliRunner().invoke(app, ["retrieve", str(emb_dir), "--query-nerf", str(shard), "--encoder", str(enc),
                                 "--top-k", "3", "--out", str(out), "--resolution", "16", "--nerfs", str(tmp_path / "q")])
    assert r.exit_code == 0, r.output
    rows = [ln.split("\t") for ln in r.output.splitlines() if ln[:1].isdigit()]
    assert len(rows) == 3 and all(row[1] == "chair" for row in rows)
    png = out / "query-q-0.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def test_cli_retrieve_errors(emb_dir, tmp_path):
    runner = CliRunner()
    for args in (
        ["retrieve", str(tmp_path / "missing")],
        ["retrieve", str(emb_dir), "--arch", "nosuch"],
        ["retrieve", str(emb_dir), "--split", "nosplit"],
        ["retrieve", str(emb_dir), "--metric", "dot"],
        ["retrieve", str(emb_dir), "--k", "0"],
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 1, (args, r.output)
        assert r.output.startswith("error: ") and r.output.count("\n") == 1, r.output
    r = runner.invoke(app, ["retrieve", str(emb_dir), "--out", str(tmp_path / "o"), "--no-progress"])
    assert r.exit_code == 0 and "ALL/ALL" in r.output
