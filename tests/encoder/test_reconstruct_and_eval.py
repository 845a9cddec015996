"""render --decoder, the encoder evaluation and the encoder benchmark on tiny inputs."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from nfkit.bench.encoder import bench_arch, to_markdown
from nfkit.cli import app
from nfkit.encoder.config import resolve_config
from nfkit.encoder.evaluate import main as evaluate_main
from nfkit.encoder.train import pretrain_encoder

runner = CliRunner()


def test_render_decoder_reconstructions_and_evaluation(tiny_workspace, tmp_path):
    ws = tiny_workspace
    enc = tmp_path / "enc"
    pretrain_encoder(ws / "graphs", ws / "nerfs", enc, resolve_config("tiny", {"loss": "r+c", "epochs": 1}), progress=False)
    r = runner.invoke(app, ["render", str(ws / "nerfs"), "--decoder", str(enc / "best.h5"), "--out", str(tmp_path / "rec"),
                            "--turntable", "2", "--resolution", "16", "--samples", "16", "--grid-res", "8",
                            "--arch", "mlp-32h", "--limit", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    pngs = sorted((tmp_path / "rec").rglob("*.png"))
    assert len(pngs) == 2
    img = np.asarray(Image.open(pngs[0]))
    assert img.shape[0] > 2 * 16 and img.shape[1] >= 2 * 16  # two rows (NeRF, decoder) of two views
    assert "PSNR" in r.output
    r = runner.invoke(app, ["embed", str(ws / "graphs"), "--encoder", str(enc / "best.h5"), "--out", str(tmp_path / "emb"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert evaluate_main(["--encoder", str(enc / "best.h5"), "--embeddings", str(tmp_path / "emb"),
                          "--nerfs", str(ws / "nerfs"), "--out", str(tmp_path / "ev"), "--split", "test", "--k", "3"]) == 0
    res = json.loads((tmp_path / "ev" / "encoder_eval.json").read_text())
    assert res["n_queries"] == 6 and res["n_gallery"] == 18 and res["archs"] == ["hash-11t", "mlp-32h", "tri-16w"]
    assert 0.0 <= res["arch_knn_acc"] <= 1.0 and 0.0 <= res["cross_arch_class_knn_acc"] <= 1.0
    assert set(res["within_arch_class_knn_acc"]) == {"hash-11t", "mlp-32h", "tri-16w"}
    assert res["n_nerfs"] == 6 and np.isfinite(res["decoder_psnr"]) and np.isfinite(res["decoder_psnr_floor"])
    assert (tmp_path / "ev" / "tsne.png").is_file()


def test_encoder_bench_runs_and_reports_both_paths():
    r = bench_arch("mlp-32h", batch=1, repeat=1, rate=100.0)
    assert set(r["embed"]) == {"cpu", "paper"} and r["embed"]["cpu"]["sparse_ms"] > 0
    md = to_markdown({"machine": "x", "threads": 1, "matmul_gflops": 100.0, "archs": [r]})
    assert "| mlp-32h | paper |" in md
