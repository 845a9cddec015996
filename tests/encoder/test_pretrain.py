"""pretrain-encoder and embed on a tiny workspace: training, resume, checkpoints, refusals."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import torch
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.embed.store import load_embeddings
from nfkit.encoder.checkpoint import load_checkpoint
from nfkit.encoder.config import resolve_config
from nfkit.encoder.train import pretrain_encoder
from nfkit.graphs.convert import build_graphs
from nfkit.graphs.store import find_graph_shards
from nfkit.io.status import workspace_status

from .conftest import make_nerfs

runner = CliRunner()


def _train(ws, out, loss="r+c", **kw):
    cfg = resolve_config("tiny", {"loss": loss, "epochs": 2})
    return pretrain_encoder(ws / "graphs", ws / "nerfs", out, cfg, progress=False, **kw)


def test_resume_equals_an_uninterrupted_run(tiny_workspace, tmp_path):
    full = _train(tiny_workspace, tmp_path / "a")
    part = _train(tiny_workspace, tmp_path / "b", stop_after=1)
    assert part.epochs_run == 1 and load_checkpoint(tmp_path / "b" / "last.h5").epoch == 1
    resumed = _train(tiny_workspace, tmp_path / "b", resume=True)
    assert resumed.epochs_run == 1
    a = load_checkpoint(tmp_path / "a" / "last.h5")
    b = load_checkpoint(tmp_path / "b" / "last.h5")
    assert a.epoch == b.epoch == 2
    # Equal up to floating-point noise (on one machine they are bitwise equal; a BLAS kernel
    # choice may differ elsewhere, and Adam turns rounding differences into ~lr-sized steps).
    # A resume that loses the optimizer, scheduler or random state differs by far more.
    for module in a.state:
        for name, t in a.state[module].items():
            np.testing.assert_allclose(t.numpy(), b.state[module][name].numpy(), atol=1e-3, err_msg=f"{module}.{name}")
    np.testing.assert_allclose([h["loss"] for h in a.history], [h["loss"] for h in b.history], rtol=1e-3)
    assert full.history[-1]["val_psnr"] > 0 and "val_siglip" in full.history[-1]


def test_an_existing_run_is_not_overwritten_without_resume_or_force(tiny_workspace, tmp_path):
    _train(tiny_workspace, tmp_path / "a")
    r = runner.invoke(app, ["pretrain-encoder", str(tiny_workspace / "graphs"), str(tiny_workspace / "nerfs"),
                            "--preset", "tiny", "--out", str(tmp_path / "a"), "--no-progress"])
    assert r.exit_code == 1 and "--resume" in r.output
    r = runner.invoke(app, ["pretrain-encoder", str(tiny_workspace / "graphs"), str(tiny_workspace / "nerfs"),
                            "--preset", "tiny", "--set", "epochs=3", "--out", str(tmp_path / "a"), "--resume", "--no-progress"])
    assert r.exit_code == 1 and "other settings" in r.output and "epochs" in r.output


def test_loss_c_trains_no_decoder_and_keeps_the_best_by_siglip(tiny_workspace, tmp_path):
    s = _train(tiny_workspace, tmp_path / "c", loss="c")
    ck = load_checkpoint(tmp_path / "c" / "best.h5")
    assert "decoder" not in ck.state and "siglip" in ck.state
    assert "val_psnr" not in s.history[-1] and np.isfinite(s.history[-1]["val_siglip"])


def test_cli_pretrain_then_embed_in_a_workspace_with_unseen_and_foreign_nerfs(tiny_workspace, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(tiny_workspace, ws)
    r = runner.invoke(app, ["--workspace", str(ws), "pretrain-encoder", "--loss", "r", "--preset", "tiny", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert (ws / "encoder" / "best.h5").is_file() and (ws / "encoder" / "last.h5").is_file()
    r = runner.invoke(app, ["--workspace", str(ws), "embed", "--arch", "hash-11t", "--no-progress"])
    assert r.exit_code == 0, r.output
    es = load_embeddings(ws / "embeddings")
    assert es.archs() == ["hash-11t"] and len(es) == 10 and es.dim == 16
    # adding architectures later adds shards and recomputes nothing
    r = runner.invoke(app, ["--workspace", str(ws), "embed", "--no-progress"])
    assert r.exit_code == 0 and "1 up to date" in r.output, r.output
    es = load_embeddings(ws / "embeddings")
    assert len(es) == 30 and set(es.archs()) == {"mlp-32h", "tri-16w", "hash-11t"}
    # `nfkit status` checks the encoder and the embeddings against the graph shards they read
    folders = {f.name: f for f in workspace_status(ws)}
    encoders = [a for a in folders["encoder"].artifacts if a.kind == "encoder"]
    assert len(encoders) == 2 and {a.state for a in encoders} == {"ok"}
    assert len(folders["embeddings"].artifacts) == 3 and {a.state for a in folders["embeddings"].artifacts} == {"ok"}
    (graph,) = find_graph_shards(ws / "graphs" / "hash-11t")
    with h5py.File(graph, "r+") as f:  # the graph shard rewritten after training and embedding
        f.attrs["rewritten"] = 1
    folders = {f.name: f for f in workspace_status(ws)}
    assert {a.state for a in folders["encoder"].artifacts if a.kind == "encoder"} == {"stale"}
    stale = [a for a in folders["embeddings"].artifacts if a.state == "stale"]
    assert len(stale) == 1 and "hash-11t" in str(stale[0].path) and "graphs" in stale[0].reason
    shutil.rmtree(ws / "graphs")
    shutil.copytree(tiny_workspace / "graphs", ws / "graphs")
    # an architecture the encoder never saw is embedded as it is
    make_nerfs(ws / "more", archs=("mlp-2l",), init_seed=3)
    list(build_graphs([ws / "more"], ws / "more_graphs"))
    r = runner.invoke(app, ["--workspace", str(ws), "embed", str(ws / "more_graphs"), "--out", str(ws / "emb2"), "--no-progress"])
    assert r.exit_code == 0, r.output
    # NeRFs of a trained architecture from another init are refused, unless allowed
    make_nerfs(ws / "foreign", archs=("mlp-32h",), init_seed=7)
    list(build_graphs([ws / "foreign"], ws / "foreign_graphs"))
    r = runner.invoke(app, ["--workspace", str(ws), "embed", str(ws / "foreign_graphs"), "--out", str(ws / "emb3"), "--no-progress"])
    assert r.exit_code == 1 and "init" in r.output and "--allow-foreign-init" in r.output
    assert not (ws / "emb3").exists() or not list((ws / "emb3").rglob("*.h5"))
    r = runner.invoke(app, ["--workspace", str(ws), "embed", str(ws / "foreign_graphs"), "--out", str(ws / "emb3"),
                            "--allow-foreign-init", "--no-progress"])
    assert r.exit_code == 0, r.output


def test_embed_refuses_a_missing_or_corrupt_encoder(tiny_workspace, tmp_path):
    r = runner.invoke(app, ["embed", str(tiny_workspace / "graphs"), "--encoder", str(tmp_path / "nope.h5"), "--no-progress"])
    assert r.exit_code == 1 and "nope.h5" in r.output
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    r = runner.invoke(app, ["embed", str(tiny_workspace / "graphs"), "--encoder", str(bad), "--no-progress"])
    assert r.exit_code == 1 and "bad.h5" in r.output and "Traceback" not in r.output


def test_unknown_loss_and_preset_are_one_line(tiny_workspace):
    r = runner.invoke(app, ["pretrain-encoder", str(tiny_workspace / "graphs"), "--loss", "x"])
    assert r.exit_code == 1 and "loss" in r.output
    r = runner.invoke(app, ["pretrain-encoder", str(tiny_workspace / "graphs"), "--preset", "huge"])
    assert r.exit_code == 1 and "preset" in r.output


def test_embed_norm_standardises_the_embedding_and_the_decoder_undoes_it(tiny_workspace, tmp_path):
    from nfkit.encoder.data import GraphBank
    from nfkit.encoder.embed import load_encoder

    cfg = resolve_config("tiny", {"loss": "r+c", "epochs": 2, "embed_norm": True, "refit_steps": 0})  # the training decoder
    pretrain_encoder(tiny_workspace / "graphs", tiny_workspace / "nerfs", tmp_path / "n", cfg, progress=False)
    enc = load_encoder(tmp_path / "n" / "best.h5")
    out_scale, in_scale = enc.model.scales()
    assert not out_scale.is_identity
    np.testing.assert_array_equal(out_scale.mean.numpy(), in_scale.mean.numpy())
    bank = GraphBank.load(tiny_workspace / "graphs", splits={"train"})
    items = bank.items
    emb = enc.model.embed(bank, items)
    x = torch.rand(len(items), 7, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rgb, sigma = enc.model.decoder(emb, x)
    mean, std = out_scale.mean.clone(), out_scale.std.clone()
    out_scale.reset()
    in_scale.reset()
    raw = enc.model.embed(bank, items).double()
    # standardised over the training graphs: mean 0 and standard deviation 1 in every dimension
    # that varies (a dead ReLU unit of the readout stays 0)
    np.testing.assert_allclose(emb.numpy(), ((raw - mean.double()) / std.double()).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(emb.double().mean(0).numpy(), 0.0, atol=1e-3)
    live = raw.std(0) > 1e-3 * raw.std(0).max()
    assert live.sum() >= 4
    np.testing.assert_allclose(emb.double().std(0)[live].numpy(), 1.0, atol=1e-3)
    # the decoder sees the raw embedding: decoding the standardised one equals decoding the raw
    # one with the scales removed
    rgb0, sigma0 = enc.model.decoder(raw.float(), x)
    np.testing.assert_allclose(rgb.numpy(), rgb0.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sigma.numpy(), sigma0.numpy(), rtol=1e-4, atol=1e-5)


def test_edge_value_norm_stores_each_layouts_statistics_and_embeds_from_them(tiny_workspace, tmp_path):
    from nfkit.encoder.data import GraphBank
    from nfkit.encoder.embed import load_encoder
    from nfkit.models.edge_norm import layout_key

    cfg = resolve_config("tiny", {"loss": "r+c", "epochs": 1, "value_norm": "edge"})
    pretrain_encoder(tiny_workspace / "graphs", tiny_workspace / "nerfs", tmp_path / "e", cfg, progress=False)
    enc = load_encoder(tmp_path / "e" / "best.h5")  # the buffers come back from the checkpoint
    norm = enc.model.encoder.value_norm
    bank = GraphBank.load(tiny_workspace / "graphs")
    assert len(norm.keys()) == len(bank.archs)
    for arch, g in bank.archs.items():
        mean, std = norm.stats(layout_key(g.structure_key, g.meta[0].init_fingerprint))
        train = np.array([m.split == "train" for m in g.meta])
        np.testing.assert_allclose(mean.numpy(), g.values[train].mean(0), rtol=1e-5, atol=1e-6)
        assert (std.numpy() > 0).all()
        # the encoder reads (value - mean) / std, without the per-(layer, type) statistics
        rows = list(range(len(g.meta)))
        got = enc.model.embed(bank, [(arch, r) for r in rows])
        z = (torch.from_numpy(g.values) - mean) / std
        want = enc.model.encoder.forward_dense(z, g.structure, layer_stats=False)
        want = enc.model.encoder.out_scale(want) if hasattr(enc.model.encoder, "out_scale") else want
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
        plain = enc.model.encoder.forward_dense(torch.from_numpy(g.values), g.structure)
        assert not np.allclose(plain.numpy(), want.numpy(), atol=1e-4)


def test_an_unseen_layout_gets_the_layer_statistics_only(tiny_workspace, tmp_path):
    from nfkit.encoder.data import GraphBank
    from nfkit.encoder.embed import load_encoder

    cfg = resolve_config("tiny", {"loss": "c", "epochs": 1, "value_norm": "edge"})
    pretrain_encoder(tiny_workspace / "graphs", None, tmp_path / "e", cfg, progress=False,
                     archs=["mlp-32h", "tri-16w"])
    enc = load_encoder(tmp_path / "e" / "best.h5")
    assert len(enc.model.encoder.value_norm.keys()) == 2
    bank = GraphBank.load(tiny_workspace / "graphs", archs=["hash-11t"])
    g = bank.archs["hash-11t"]
    got = enc.model.embed(bank, bank.items)
    want = enc.model.encoder.forward_dense(torch.from_numpy(g.values), g.structure)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    # the embedding of each graph is a function of that graph alone
    np.testing.assert_allclose(enc.model.embed(bank, bank.items[:1]).numpy(), got[:1].numpy(), rtol=1e-5, atol=1e-6)

