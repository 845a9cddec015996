"""Data-parallel pretrain-encoder under ``torchrun --nproc-per-node 2`` (gloo): one epoch, then a
resume through the CLI, equals a single-process run step for step (same losses, validation and
weights up to floating-point rounding), with the decoder's batch normalisation synchronised."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nfkit.encoder.checkpoint import load_checkpoint
from nfkit.encoder.config import resolve_config
from nfkit.encoder.train import pretrain_encoder
from tests.dist.torchrun import one_thread, torchrun

# 6 training objects in steps of 3 objects (6 graphs: 3 per rank); the cpu preset's decoder_norm
# (batch statistics) and embed_norm (measured at the end, on rank 0)
SETTINGS = {"loss": "r+c", "epochs": 2, "batch_objects": 3, "decoder_norm": True, "embed_norm": True}

_FIRST_EPOCH = """
import sys
from pathlib import Path
from nfkit.distributed import init_distributed
from nfkit.encoder.config import resolve_config
from nfkit.encoder.train import pretrain_encoder
graphs, nerfs, out = map(Path, sys.argv[1:4])
dist = init_distributed("gloo", "cpu")
cfg = resolve_config("tiny", {settings!r})
pretrain_encoder(graphs, nerfs, out, cfg, progress=False, stop_after=1, dist=dist)
dist.close()
"""


@pytest.mark.slow
def test_two_ranks_then_a_resume_equal_one_process(tiny_workspace, tmp_path):
    graphs, nerfs = tiny_workspace / "graphs", tiny_workspace / "nerfs"
    cfg = resolve_config("tiny", SETTINGS)
    with one_thread():
        single = pretrain_encoder(graphs, nerfs, tmp_path / "one", cfg, progress=False)
    script = tmp_path / "first_epoch.py"
    script.write_text(_FIRST_EPOCH.format(settings=SETTINGS))
    torchrun([str(script), str(graphs), str(nerfs), str(tmp_path / "two")], module=False)
    assert load_checkpoint(tmp_path / "two" / "last.h5").epoch == 1
    sets = [a for k, v in SETTINGS.items() if k not in ("loss", "epochs") for a in ("--set", f"{k}={v}")]
    out = torchrun(["pretrain-encoder", str(graphs), str(nerfs), "--preset", "tiny", "--loss", "r+c", "--epochs", "2",
                    *sets, "--out", str(tmp_path / "two"), "--resume", "--no-progress", "--dist-backend", "gloo"]).stdout
    assert out.count("data-parallel over 2 ranks (gloo)") == 1, out  # rank 0 reports, alone
    log = json.loads((tmp_path / "two" / "train_log.json").read_text())
    assert [h["epoch"] for h in log["history"]] == [1, 2]
    for a, b in zip(single.history, log["history"], strict=True):
        for key in ("loss", "loss_r", "loss_c", "val_psnr", "val_siglip"):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-4, err_msg=f"epoch {a['epoch']} {key}")
    ca, cb = load_checkpoint(tmp_path / "one" / "best.h5"), load_checkpoint(tmp_path / "two" / "best.h5")
    assert ca.epoch == cb.epoch == 2
    assert set(ca.state) == set(cb.state)
    # The render decoder is fitted by rank 0 alone, after training, to embeddings equal to 1e-4;
    # its whitening divides by the embeddings' smallest principal spreads, which turns those
    # differences into 1e-2 ones, so only its mean is compared tightly.
    np.testing.assert_allclose(cb.state["render_decoder"]["whiten_mean"].numpy(),
                               ca.state["render_decoder"]["whiten_mean"].numpy(), atol=1e-4)
    for module in set(ca.state) - {"render_decoder"}:  # embed_norm's statistics included (rank 0 measured them)
        for name, t in ca.state[module].items():
            np.testing.assert_allclose(cb.state[module][name].numpy(), t.numpy(), atol=1e-4, err_msg=f"{module}.{name}")
    assert not cb.state["encoder"]["out_scale.std"].eq(1).all()


@pytest.mark.slow
def test_more_ranks_than_graphs_in_a_step(tiny_workspace, tmp_path):
    """Steps of 1 object (2 graphs) over 3 ranks: the third rank has nothing to embed and still
    joins every collective; the result is still the single-process one."""
    graphs, nerfs = tiny_workspace / "graphs", tiny_workspace / "nerfs"
    settings = {"loss": "r+c", "epochs": 1, "batch_objects": 1, "decoder_norm": True}
    with one_thread():
        single = pretrain_encoder(graphs, nerfs, tmp_path / "one", resolve_config("tiny", settings), progress=False)
    sets = [a for k, v in settings.items() if k not in ("loss", "epochs") for a in ("--set", f"{k}={v}")]
    torchrun(["pretrain-encoder", str(graphs), str(nerfs), "--preset", "tiny", "--loss", "r+c", "--epochs", "1", *sets,
              "--out", str(tmp_path / "three"), "--no-progress"], nproc=3)
    log = json.loads((tmp_path / "three" / "train_log.json").read_text())
    np.testing.assert_allclose(log["history"][0]["loss"], single.history[0]["loss"], rtol=1e-4)
    np.testing.assert_allclose(log["history"][0]["val_psnr"], single.history[0]["val_psnr"], rtol=1e-4)
