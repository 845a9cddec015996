"""fit-nerfs, build-graphs and embed under ``torchrun --nproc-per-node 2`` write the same files,
with the same content, as one process (the shared inits and fit_config.json included, no
temporary file left), each process labelling its output with its shard."""

from __future__ import annotations

from pathlib import Path

import pytest

from nfkit.data.synth import SynthConfig, generate_dataset
from nfkit.eval.same_artifacts import compare_folders

from .torchrun import nfkit_here, one_thread, torchrun

# 6 objects in batches of 2: shard 1 fits batches 0 and 2, shard 2 batch 1
FIT = [
    "--preset", "tiny", "--set", "steps=4", "--set", "rays=32", "--set", "samples=8", "--set", "grid_res=4",
    "--set", "resolution=16", "--set", "batch_nerfs=2", "--arch", "mlp-32h", "--arch", "hash-11t", "--no-progress",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sharded") / "data"
    generate_dataset(root, SynthConfig(resolution=16, objects_per_class=3, views=8, classes=("car", "chair"), seed=3))
    return root


@pytest.mark.slow
def test_fit_build_graphs_embed_under_torchrun_equal_one_process(dataset, tmp_path):
    from nfkit.encoder.config import resolve_config
    from nfkit.encoder.train import pretrain_encoder

    one, two = tmp_path / "one", tmp_path / "two"
    # fit-nerfs: the same shards (names and weights) and the same shared files
    nfkit_here(["fit-nerfs", str(dataset), "--out", str(one / "nerfs"), *FIT])
    out = torchrun(["fit-nerfs", str(dataset), "--out", str(two / "nerfs"), *FIT]).stdout
    assert "shard 1/2: mlp-32h: fitted 4" in out and "shard 2/2: mlp-32h: fitted 2" in out, out
    assert compare_folders(one / "nerfs", two / "nerfs") == []
    assert len(list((two / "nerfs" / "mlp-32h").glob("shard-*.h5"))) == 3
    # build-graphs from the same NeRFs
    nfkit_here(["build-graphs", str(one / "nerfs"), "--out", str(one / "graphs"), "--no-progress"])
    out = torchrun(["build-graphs", str(one / "nerfs"), "--out", str(two / "graphs"), "--no-progress"]).stdout
    assert "shard 1/2: built" in out and "shard 2/2: built" in out, out
    assert compare_folders(one / "graphs", two / "graphs") == []
    # embed with one encoder
    cfg = resolve_config("tiny", {"loss": "c", "epochs": 1})
    with one_thread():
        pretrain_encoder(one / "graphs", None, tmp_path / "encoder", cfg, progress=False)
    enc = str(tmp_path / "encoder" / "best.h5")
    nfkit_here(["embed", str(one / "graphs"), "--encoder", enc, "--out", str(one / "emb"), "--no-progress"])
    torchrun(["embed", str(one / "graphs"), "--encoder", enc, "--out", str(two / "emb"), "--no-progress"])
    assert compare_folders(one / "emb", two / "emb") == []
    # a rerun under torchrun finds everything done
    out = torchrun(["embed", str(one / "graphs"), "--encoder", enc, "--out", str(two / "emb"), "--no-progress"]).stdout
    assert out.count("embedded 0 NeRFs") == 2, out
