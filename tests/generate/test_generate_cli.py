"""``nfkit generate`` through the CLI on a tiny workspace: GANs, quality, renders, NeRFs out."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.embed.store import load_embeddings
from nfkit.encoder.embed import embed_records, load_encoder
from nfkit.graphs.convert import build_graphs
from nfkit.nerf.store import iter_nerfs
from nfkit.render.rays import turntable_cameras
from nfkit.render.views import render_views

from . import gif_frames

runner = CliRunner()
TINY_RENDER = ["--views", "2", "--resolution", "8", "--render-samples", "8"]


def _run(ws, *args):
    return runner.invoke(app, ["--workspace", str(ws), *map(str, args)])


def test_gan_writes_samples_quality_renders_and_real_nerfs(gen_workspace, tmp_path):
    ws, out = gen_workspace, tmp_path / "gen"
    r = _run(ws, "generate", "gan", "--preset", "tiny", "--samples", "5", "--render", "1", *TINY_RENDER,
             "--to-nerf", "mlp-32h", "--fit-preset", "tiny", "--out", out, "--no-progress")
    assert r.exit_code == 0, r.output
    assert "train (ceiling)" in r.output and "noise (floor)" in r.output
    real = load_embeddings(ws / "embeddings")
    gen = load_embeddings(out / "generated.h5")
    assert len(gen) == 10 and set(gen.split) == {"generated"} and gen.classes() == ["chair", "lamp"]
    assert gen.encoder_fingerprint == real.encoder_fingerprint and (gen.embedding >= 0).all()
    rows = json.loads((out / "quality.json").read_text())["rows"]
    assert {(x["class_name"], x["source"]) for x in rows} == {
        (c, s) for c in ("chair", "lamp") for s in ("generated", "train (ceiling)", "noise (floor)")}
    ceiling = [x for x in rows if x["source"] == "train (ceiling)"]
    assert all(x["accuracy"] is not None and 0 <= x["coverage"] <= 1 and x["frechet"] >= 0 for x in rows)
    assert all(x["n"] == 9 for x in ceiling)  # 3 training objects x 3 architectures per class
    # the reference set: every held-out (val + test) embedding of the class
    held_out = real.select(split=["val", "test"])
    assert all(x["n_reference"] == int((held_out.class_name == x["class_name"]).sum()) > 0 for x in rows)
    assert len(held_out.select(split="val")) > 0
    for c in ("chair", "lamp"):
        png, gif = out / "views" / c / "gan-0000.png", out / "views" / c / "gan-0000.gif"
        assert Image.open(png).size[1] == 8
        frames, ms = gif_frames(gif)
        assert ms == 2 * 120 and 1 <= frames <= 2
    # the NeRFs out: readable, from the workspace's shared init, accepted by build-graphs and embed
    records = list(iter_nerfs(out / "nerfs"))
    assert sorted(r.key for r in records) == ["chair/gan-0000", "lamp/gan-0000"]
    assert {r.split for r in records} == {"generated"} and all(np.isfinite(r.psnr) for r in records)
    results = list(build_graphs([out / "nerfs"], tmp_path / "graphs"))
    assert [x.status for x in results] == ["built"], [x.message for x in results]
    es = embed_records(load_encoder(ws / "encoder" / "best.h5"), records)
    assert es.embedding.shape == (2, real.dim)
    img = render_views(records[0].arch, records[0].params, turntable_cameras(1, 30.0, 3.4), 8, 8, 10.0, 8, 8)
    assert np.isfinite(img).all()
    # nfkit status reads every artifact generate wrote
    r = runner.invoke(app, ["status", str(out), "--no-check"])
    assert "latent-gan" in r.output and "unreadable" not in r.output, r.output
    # a rerun reuses the GANs
    r = _run(ws, "generate", "gan", "--preset", "tiny", "--samples", "5", "--render", "0", "--out", out, "--no-progress")
    assert r.exit_code == 0 and "0 trained, 2 reused" in r.output, r.output


def test_interpolate_writes_both_rows(gen_workspace, tmp_path):
    out = tmp_path / "strip.png"
    r = _run(gen_workspace, "generate", "interpolate", "mlp-32h:chair/ch0", "mlp-32h:lamp/la1", "--steps", "3",
             "--resolution", "8", "--render-samples", "8", "--out", out, "--no-progress")
    assert r.exit_code == 0, r.output
    w, h = Image.open(out).size
    assert w == 3 * 8 + 2 * 2 and h == 2 * 8 + 2


def test_bad_input_is_one_line(gen_workspace, tmp_path):
    ws = gen_workspace
    cases = [
        (["generate", "gan", str(tmp_path / "nope")], "no such file"),
        (["generate", "gan", "--class", "sofa", "--preset", "tiny"], "no train-split embeddings of class sofa"),
        (["generate", "gan", "--distance", "manhattan"], "--distance"),
        (["generate", "gan", "--preset", "huge"], "unknown preset"),
        (["generate", "gan", "--set", "epochs=0"], "epochs"),
        (["generate", "gan", "--preset", "tiny", "--to-nerf", "mlp", "--render", "1"], "no shared init of mlp"),
        (["generate", "interpolate", "mlp-32h:chair/ch0", "tri-16w:chair/ch0"], "different architectures"),
        (["generate", "interpolate", "chair/ch0", "chair/ch1"], "is in 3 architectures"),
        (["generate", "interpolate", "mlp-32h:chair/zz", "mlp-32h:chair/ch1"], "no such NeRF"),
        (["generate", "interpolate", "mlp-32h:chair/ch0", "mlp-32h:chair/ch1", "--steps", "1"], "at least 2 steps"),
    ]
    for args, needle in cases:
        r = _run(ws, *args, "--out", str(tmp_path / "o"), "--no-progress") if args[1] == "gan" else _run(ws, *args, "--no-progress")
        assert r.exit_code == 1, (args, r.output)
        assert needle in r.output and len(r.output.strip().splitlines()) == 1, (args, r.output)
