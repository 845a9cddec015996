"""The weights-vs-rendering benchmark on a handful of random NeRFs with a stand-in encoder."""

import json

import numpy as np
import pytest
import torch

from nfkit.bench.classify import main, vote
from nfkit.embed.store import META_STR, write_embedding_shard
from nfkit.nerf.specs import REGISTRY
from nfkit.nerf.store import NerfRecord, write_nerf_shard
from tests.tasks.test_classify import _install_fake_encoder


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_vote_majority_and_tie_break():
    class Fixed(torch.nn.Module):
        def forward(self, x):  # view i of NeRF j -> logits stored in the image's first pixel
            return x[:, :3, 0, 0]

    views = np.zeros((1, 3, 3, 1, 1), np.float32)
    views[0, 0, :, 0, 0] = [9, 0, 0]
    views[0, 1, :, 0, 0] = [0, 9, 0]
    views[0, 2, :, 0, 0] = [0, 9, 0]
    assert vote(Fixed(), views)[0].tolist() == [1]


def test_classify_bench_tiny(tmp_path, monkeypatch):
    spec = REGISTRY["mlp"]
    rng = np.random.default_rng(0)
    recs = [NerfRecord(f"{c}{s}{i}", c, s, spec, "init0",
                       {k: rng.normal(size=sh).astype(np.float32) * 0.1 for k, sh in spec.param_shapes().items()})
            for c in ("car", "lamp") for s in ("train", "test") for i in range(2)]
    write_nerf_shard(tmp_path / "nerfs" / "mlp.h5", recs)
    centres = {"car": np.ones(8, np.float32), "lamp": -np.ones(8, np.float32)}
    emb = np.stack([centres[r.class_name] + rng.normal(size=8) * 0.1 for r in recs]).astype(np.float32)
    meta = {k: [""] * len(recs) for k in META_STR}
    meta.update(object_id=[r.object_id for r in recs], class_name=[r.class_name for r in recs],
                split=[r.split for r in recs], arch=["mlp"] * len(recs))
    write_embedding_shard(tmp_path / "emb" / "mlp.h5", emb, meta, range(len(recs)), encoder_fingerprint="enc0", encoder_kind="t")
    _install_fake_encoder(monkeypatch, centres)
    enc = tmp_path / "enc.h5"
    enc.write_bytes(b"stand-in")
    res = main(["--nerfs", str(tmp_path / "nerfs"), "--embeddings", str(tmp_path / "emb"), "--encoder", str(enc),
                "--out", str(tmp_path / "out"), "--views", "1", "2", "--resolution", "16", "--samples", "16",
                "--grid-res", "16", "--epochs", "1", "--no-progress"])
    rows = res["rows"]
    assert [r["views"] for r in rows] == [0, 1, 2]
    assert rows[0]["accuracy"] == 1.0 and rows[0]["n_test"] == 4
    assert all(r["total_ms"] > 0 for r in rows)
    assert json.loads((tmp_path / "out" / "classify_bench.json").read_text())["meta"]["n_test"] == 4
    assert "render 2 view(s) + ResNet-18" in (tmp_path / "out" / "classify_bench.md").read_text()
