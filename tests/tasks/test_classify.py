"""Classifier training, artifact, encoder check, transfer matrix, CLI."""

import json
import sys
import types

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.embed.store import load_embeddings
from nfkit.errors import ConfigError, IncompatibleError, UserError
from nfkit.models.heads import EmbeddingClassifier, mix_same_class
from nfkit.tasks.classifier import (
    classifier_config,
    load_classifier,
    predict,
    save_classifier,
    train_classifier,
)
from nfkit.tasks.classify import parse_train_sets, run_classify

from .conftest import make_embeddings


def test_head_shapes_and_blocks():
    m = EmbeddingClassifier(1024, 13)
    linears = [mod for mod in m.net if isinstance(mod, torch.nn.Linear)]
    assert [lin.out_features for lin in linears] == [1024, 512, 256, 13]  # seed 000: 3 blocks + output
    assert sum(isinstance(mod, torch.nn.BatchNorm1d) for mod in m.net) == 3
    assert m(torch.randn(4, 1024)).shape == (4, 13)
    with pytest.raises(ValueError, match="expected embeddings"):
        m(torch.randn(4, 10))


def test_mix_same_class_takes_values_of_own_class_only():
    x = torch.tensor([[0.0] * 8, [1.0] * 8, [10.0] * 8, [11.0] * 8])
    y = torch.tensor([0, 0, 1, 1])
    mixed = mix_same_class(x, y, generator=torch.Generator().manual_seed(0))
    assert ((mixed[:2] == 0) | (mixed[:2] == 1)).all()
    assert ((mixed[2:] == 10) | (mixed[2:] == 11)).all()


def test_train_save_load_predict(emb_dir, tmp_path):
    es = load_embeddings(emb_dir)
    cfg = classifier_config("tiny", epochs=6)
    clf = train_classifier(es.select(split="train"), es.select(split="val"), cfg)
    assert 0 <= clf.best_epoch < 6 and len(clf.history) == 6
    test = es.select(split="test", arch="mlp")
    pred, probs = predict(clf, test)
    assert probs.shape == (len(test), 4) and np.allclose(probs.sum(1), 1, atol=1e-5)
    path = save_classifier(tmp_path / "c.h5", clf)
    back = load_classifier(path)
    assert back.classes == clf.classes and back.encoder_fingerprint == "enc0"
    assert (predict(back, test)[0] == pred).all()
    # deterministic: the same seed gives the same classifier
    again = train_classifier(es.select(split="train"), es.select(split="val"), cfg)
    assert (predict(again, test)[0] == pred).all()


def test_classifier_refuses_another_encoder(emb_dir, tmp_path):
    es = load_embeddings(emb_dir)
    clf = train_classifier(es.select(split="train"), None, classifier_config("tiny"))
    other = load_embeddings(make_embeddings(tmp_path / "other", encoder="enc1"))
    with pytest.raises(IncompatibleError, match="encoder enc1"):
        predict(clf, other)


def test_parse_train_sets():
    assert parse_train_sets(None, ["tri", "mlp"]) == {"all": ["mlp", "tri"], "mlp": ["mlp"], "tri": ["tri"]}
    assert parse_train_sets(["MLP+tri"], ["tri", "mlp", "hash"]) == {"mlp+tri": ["mlp", "tri"]}
    with pytest.raises(UserError, match="expected all or one of hash, mlp"):
        parse_train_sets(["foo"], ["mlp", "hash"])
    with pytest.raises(ConfigError, match="unknown classifier preset"):
        classifier_config("fast")


def test_transfer_matrix_separable_vs_shifted(tmp_path):
    """Aligned architectures transfer; strongly shifted ones do not (the R vs R+C pattern)."""
    cfg = classifier_config("tiny", epochs=40, lr=1e-2, batch_size=8, hidden=(32, 16, 16))
    aligned = run_classify(make_embeddings(tmp_path / "a", arch_shift=0.0), tmp_path / "oa", cfg, ["mlp"])
    shifted = run_classify(make_embeddings(tmp_path / "s", arch_shift=6.0), tmp_path / "os", cfg, ["mlp"])
    j = aligned.test_archs.index("hash")
    assert aligned.test_archs == ["hash", "mlp", "mlp-2l", "tri"]
    assert aligned.matrix[0, j] >= 0.9
    assert shifted.matrix[0, shifted.test_archs.index("mlp")] >= 0.9
    assert shifted.matrix[0, j] < aligned.matrix[0, j]
    data = json.loads((tmp_path / "oa" / "classify.json").read_text())
    assert set(data["accuracy"]["mlp"]) == {"hash", "mlp", "mlp-2l", "tri"}
    assert len(data["confusion"]["mlp"]["tri"]) == 4
    assert "| mlp |" in (tmp_path / "oa" / "transfer.md").read_text()
    assert (tmp_path / "oa" / "classifier-mlp.h5").is_file()


def test_cli_classify_and_bad_inputs(emb_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cls"
    r = runner.invoke(app, ["classify", str(emb_dir), "--preset", "tiny", "--out", str(out), "--no-progress",
                            "--train-arch", "all", "--train-arch", "hash"])
    assert r.exit_code == 0, r.output
    assert "| all |" in r.output and (out / "classifier-all.h5").is_file()
    # missing folder, unknown arch, mixed encoders: one line, exit 1
    make_embeddings(tmp_path / "mixed", archs=("mlp",), unseen=(), encoder="enc9")
    (emb_dir / "x").mkdir()
    (tmp_path / "mixed" / "mlp.h5").rename(emb_dir / "x" / "other.h5")
    for args in (
        ["classify", str(tmp_path / "missing")],
        ["classify", str(tmp_path / "cls"), "--train-arch", "all"],  # a folder without embeddings
        ["classify", str(emb_dir), "--train-arch", "nosuch"],
        ["classify", str(emb_dir)],
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 1, (args, r.output)
        assert r.output.startswith("error: ") and r.output.count("\n") == 1, r.output


class _FakeEncoder:
    """Stands in for the encoder stage: embeds a NeRF as the class centre of its class."""

    fingerprint = "enc0"


def _install_fake_encoder(monkeypatch, centres, fingerprint="enc0"):
    from nfkit.embed.store import EmbeddingSet

    mod = types.ModuleType("nfkit.encoder.embed")

    def load_encoder(path, device="cpu"):
        return _FakeEncoder()

    def embed_records(encoder, records, progress=False):
        emb = np.stack([centres[r.class_name] for r in records]).astype(np.float32)
        meta = {"object_id": np.array([r.object_id for r in records], object),
                "class_name": np.array([r.class_name for r in records], object),
                "split": np.array([r.split for r in records], object),
                "arch": np.array([r.arch.name for r in records], object)}
        return EmbeddingSet(emb, meta, np.arange(len(records)), encoder_fingerprint=fingerprint)

    mod.load_encoder, mod.embed_records = load_encoder, embed_records
    pkg = types.ModuleType("nfkit.encoder")
    pkg.embed = mod
    monkeypatch.setitem(sys.modules, "nfkit.encoder", pkg)
    monkeypatch.setitem(sys.modules, "nfkit.encoder.embed", mod)


def write_tiny_nerfs(path, classes, arch="mlp"):
    from nfkit.nerf.specs import REGISTRY
    from nfkit.nerf.store import NerfRecord, write_nerf_shard

    spec = REGISTRY[arch]
    rng = np.random.default_rng(0)
    recs = [NerfRecord(f"o{i}", c, "test", spec, "init0",
                       {k: rng.normal(size=s).astype(np.float32) * 0.1 for k, s in spec.param_shapes().items()})
            for i, c in enumerate(classes)]
    return write_nerf_shard(path, recs)


def test_cli_predict_with_stand_in_encoder(emb_dir, tmp_path, monkeypatch):
    es = load_embeddings(emb_dir).select(split="train")
    centres = {c: es.select(class_name=c).embedding.mean(0) for c in es.classes()}
    _install_fake_encoder(monkeypatch, centres)
    runner = CliRunner()
    out = tmp_path / "cls"
    assert runner.invoke(app, ["classify", str(emb_dir), "--preset", "tiny", "--epochs", "20", "--out", str(out),
                               "--train-arch", "all", "--no-progress"]).exit_code == 0
    shard = write_tiny_nerfs(tmp_path / "nerfs" / "q.h5", ["car", "lamp"])
    enc = tmp_path / "enc.h5"
    enc.write_bytes(b"stand-in")
    r = runner.invoke(app, ["classify", "--predict", str(shard), "--classifier", str(out / "classifier-all.h5"),
                            "--encoder", str(enc), "--no-progress"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].split("\t")[2] == "car" and lines[1].split("\t")[2] == "lamp"
    # embeddings of another encoder are refused
    _install_fake_encoder(monkeypatch, centres, fingerprint="enc7")
    r = runner.invoke(app, ["classify", "--predict", str(shard), "--classifier", str(out / "classifier-all.h5"),
                            "--encoder", str(enc)])
    assert r.exit_code == 1 and "encoder" in r.output and r.output.count("\n") == 1
