"""``nfkit generate from-image`` / ``from-text`` on a tiny workspace: photos or a text -> the micro
CLIP -> clip2nerf -> the tiny encoder's decoder; the shard, the views, the GIF, the NeRF out."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.embed.store import load_embeddings
from nfkit.io.artifacts import read_header

from . import gif_frames

runner = CliRunner()
TINY_RENDER = ["--resolution", "8", "--render-samples", "8", "--device", "cpu", "--no-progress"]
TEXT = "a 3d model of a chair"


def _run(ws, *args):
    return runner.invoke(app, ["--workspace", str(ws), *map(str, args)])


def _save_maps(path, clip_info: dict, encoder_fp: str, embed_dim: int, clip_dim: int, archs, seed: int = 0):
    """A clip-maps artifact with seeded random networks (what they map is not what is tested)."""
    from nfkit.clip.maps import save_maps
    from nfkit.models.clip_maps import MappingNet

    torch.manual_seed(seed)
    nets = {"nerf2clip": MappingNet(embed_dim, clip_dim, (16,)), "clip2nerf": MappingNet(clip_dim, embed_dim, (16,)),
            "metrics": {}, "info": {}}
    save_maps(path, nets, None, clip_info, encoder_fp, "gt", {"archs": list(archs), "preset": "test"})
    return nets


@pytest.fixture(scope="module")
def clip_gen(gen_workspace, tmp_path_factory):
    """A copy of the generate workspace with <ws>/clip/maps.h5 for the micro CLIP and its encoder,
    two photos, and what the tests compare with."""
    from nfkit.clip.backend import load_clip
    from nfkit.encoder.embed import load_encoder

    ws = tmp_path_factory.mktemp("from_clip") / "ws"
    shutil.copytree(gen_workspace, ws)
    clip = load_clip("nfkit-clip-micro", None)
    enc = load_encoder(ws / "encoder" / "best.h5")
    archs = load_embeddings(ws / "embeddings").archs()
    nets = _save_maps(ws / "clip" / "maps.h5", clip.describe(), enc.fingerprint, enc.embed_dim, clip.embed_dim, archs)
    red = Image.new("RGB", (40, 28), (10, 10, 10))
    red.paste((220, 30, 30), (8, 6, 30, 22))
    red.save(ws / "red.png")
    Image.new("L", (17, 33), 140).save(ws / "grey.png")
    return {"ws": ws, "clip": clip, "enc": enc, "c2n": nets["clip2nerf"].eval(), "archs": archs}


def _clip2nerf(ctx, clip_emb: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return ctx["c2n"](torch.as_tensor(clip_emb, dtype=torch.float32)).numpy()


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0


def test_from_image_writes_the_embedding_views_and_turntable(clip_gen):
    from nfkit.generate.render import ViewSettings, embedding_views

    ws, enc = clip_gen["ws"], clip_gen["enc"]
    r = _run(ws, "generate", "from-image", ws / "red.png", "--views", "3", *TINY_RENDER)
    assert r.exit_code == 0, r.output
    out = ws / "generate" / "from-image" / "red"  # the workspace default
    es = load_embeddings(out / "generated.h5")
    assert len(es) == 1 and list(es.split) == ["generated"] and list(es.keys) == ["query/image-red"]
    assert list(es.arch) == ["+".join(clip_gen["archs"])] and es.encoder_fingerprint == enc.fingerprint
    assert es.encoder_kind == enc.kind and es.dim == enc.embed_dim
    want = _clip2nerf(clip_gen, clip_gen["clip"].encode_images([_rgb(ws / "red.png")]))[0]
    np.testing.assert_allclose(es.embedding[0], want, rtol=1e-5, atol=1e-6)
    head = read_header(out / "generated.h5")
    q = head["config"]["query"]
    assert q["kind"] == "image" and q["photos"] == [str(ws / "red.png")] and q["views"] == 1
    assert q["clip_model"] == "nfkit-clip-micro" and q["clip_fingerprint"] == clip_gen["clip"].fingerprint
    assert head["inputs"]["encoder"] == enc.fingerprint and "photos" in head["inputs"]
    # the views in a row (8 px, 2 px gaps), the same pixels as decoding the embedding; 3 GIF frames
    png = _rgb(out / "image-red.png")
    assert png.shape == (8, 3 * 8 + 2 * 2, 3)
    views = embedding_views(enc.model.decoder, want, ViewSettings(views=3, resolution=8, n_samples=8))
    for i in range(3):
        np.testing.assert_allclose(png[:, i * 10 : i * 10 + 8], views[i], atol=1.5 / 255)
    with Image.open(out / "image-red.gif") as gif:
        assert gif.size == (8, 8)
    frames, ms = gif_frames(out / "image-red.gif")
    assert ms == 3 * 120 and 1 <= frames <= 3  # one frame per view, identical ones merged
    assert f"-> {out / 'generated.h5'}" in r.output and "turntable" in r.output


def test_several_photos_are_one_query_the_mean_of_their_mapped_embeddings(clip_gen, tmp_path):
    ws = clip_gen["ws"]
    out = tmp_path / "mv"
    r = _run(ws, "generate", "from-image", ws / "red.png", ws / "grey.png", "--no-render", "--out", out, *TINY_RENDER)
    assert r.exit_code == 0, r.output
    es = load_embeddings(out / "generated.h5")
    clip_emb = clip_gen["clip"].encode_images([_rgb(ws / "red.png"), _rgb(ws / "grey.png")])
    mapped = _clip2nerf(clip_gen, clip_emb)
    np.testing.assert_allclose(es.embedding[0], mapped.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(mapped[0], mapped[1])  # the two photos differ: the mean is not one of them
    assert read_header(out / "generated.h5")["config"]["query"]["views"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["generated.h5"]  # --no-render: no PNG, no GIF


def test_from_text_with_a_class_and_a_real_nerf(clip_gen):
    from nfkit.encoder.embed import embed_records
    from nfkit.nerf.init import init_path, load_init
    from nfkit.nerf.specs import get_arch
    from nfkit.nerf.store import iter_nerfs

    ws, enc = clip_gen["ws"], clip_gen["enc"]
    r = _run(ws, "generate", "from-text", TEXT, "--class", "chair", "--views", "2", "--to-nerf", "mlp-32h",
             "--fit-preset", "tiny", *TINY_RENDER)
    assert r.exit_code == 0, r.output
    out = ws / "generate" / "from-text" / "text-a-3d-model-of-a-chair"
    es = load_embeddings(out / "generated.h5")
    assert list(es.keys) == ["chair/text-a-3d-model-of-a-chair"] and list(es.split) == ["generated"]
    want = _clip2nerf(clip_gen, clip_gen["clip"].encode_texts([TEXT]))[0]
    np.testing.assert_allclose(es.embedding[0], want, rtol=1e-5, atol=1e-6)
    q = read_header(out / "generated.h5")["config"]["query"]
    assert q["kind"] == "text" and q["text"] == TEXT
    frames, ms = gif_frames(out / "text-a-3d-model-of-a-chair.gif")
    assert ms == 2 * 120 and 1 <= frames <= 2
    (rec,) = list(iter_nerfs(out / "nerfs" / "mlp-32h"))
    init = load_init(init_path(get_arch("mlp-32h"), ws / "nerfs" / "inits"))
    assert rec.key == "chair/text-a-3d-model-of-a-chair" and rec.split == "generated" and rec.arch.name == "mlp-32h"
    assert rec.init_fingerprint == init.fingerprint and np.isfinite(rec.psnr)
    assert embed_records(enc, [rec]).embedding.shape == (1, enc.embed_dim)  # the encoder accepts it
    assert "NeRF of mlp-32h" in r.output


def test_bad_input_is_one_line(clip_gen, tmp_path):
    from nfkit.clip.backend import load_clip

    ws, enc, clip = clip_gen["ws"], clip_gen["enc"], clip_gen["clip"]
    _save_maps(tmp_path / "other-clip.h5", load_clip("nfkit-clip-micro", None, seed=5).describe(), enc.fingerprint,
               enc.embed_dim, clip.embed_dim, clip_gen["archs"])
    _save_maps(tmp_path / "other-enc.h5", clip.describe(), "0123456789abcdef", enc.embed_dim, clip.embed_dim, ["mlp-32h"])
    (tmp_path / "empty.jpg").write_bytes(b"")
    photo = ws / "red.png"
    cases = [
        (["from-image", tmp_path / "nope.jpg"], "no such image file"),
        (["from-image", tmp_path / "empty.jpg"], "empty file"),
        (["from-image", photo, tmp_path / "nope.png"], "nope.png: no such image file"),
        (["from-text", ""], "TEXT is empty"),
        (["from-text", "   "], "TEXT is empty"),
        (["from-image", photo, "--clip-maps", tmp_path / "other-clip.h5"], "CLIP weights"),
        (["from-text", TEXT, "--clip-maps", tmp_path / "other-enc.h5"], "encoder 0123456789abcdef"),
        (["from-text", TEXT, "--clip-maps", tmp_path / "none.h5"], "no CLIP maps"),
        (["from-text", TEXT, "--encoder", tmp_path / "none.h5"], "no such encoder checkpoint"),
        (["from-text", TEXT, "--class", "a/b"], "--class"),
        (["from-text", TEXT, "--to-nerf", "mlp"], "no shared init of mlp"),
        (["from-text", TEXT, "--views", "0"], "views >= 1"),
    ]
    for args, needle in cases:
        r = _run(ws, "generate", *args, "--out", tmp_path / "o", *TINY_RENDER)
        assert r.exit_code == 1, (args, r.output)
        assert needle in r.output and len(r.output.strip().splitlines()) == 1, (args, r.output)
    assert not (tmp_path / "o" / "generated.h5").exists()


def test_gan_clip_check_classifies_the_renders_of_every_source(clip_gen, tmp_path):
    import json

    from nfkit.clip.zero_shot import _normalize, nearest_class, text_classifier
    from nfkit.generate.clip_check import CHECK_VIEWS, SOURCES
    from nfkit.generate.render import embedding_views

    ws, out = clip_gen["ws"], tmp_path / "gen"
    r = _run(ws, "generate", "gan", "--preset", "tiny", "--samples", "3", "--render", "0", "--clip-check", "2",
             "--out", out, "--no-progress")
    assert r.exit_code == 0, r.output
    assert "Do the renders read as their class?" in r.output
    doc = json.loads((out / "quality.json").read_text())
    rows = doc["clip_check"]
    classes = ["chair", "lamp"]
    assert {(x["class"], x["source"]) for x in rows} == {(c, s) for c in classes for s in SOURCES}
    for x in rows:
        assert x["n"] == 2 and set(x["predicted"]) <= set(classes)
        assert x["accuracy"] == np.mean([p == x["class"] for p in x["predicted"]])
    md = (out / "quality.md").read_text()
    assert "## Quality of the generated embeddings" in md and "| **mean** |" in md
    # the first generated chair, classified here by hand: its views, CLIP, the nearest prompt
    gen = load_embeddings(out / "generated.h5").select(class_name="chair")
    views = embedding_views(clip_gen["enc"].model.decoder, gen.embedding[0], CHECK_VIEWS)
    assert views.shape == (3, 64, 64, 3)
    emb = _normalize(clip_gen["clip"].encode_images(list(views))).mean(0, keepdims=True)
    want = classes[int(nearest_class(emb, text_classifier(clip_gen["clip"], classes))[0])]
    got = next(x for x in rows if x["class"] == "chair" and x["source"] == "generated")["predicted"][0]
    assert got == want


def test_gan_clip_check_without_maps_or_with_a_negative_count_is_one_line(gen_workspace, tmp_path):
    r = _run(gen_workspace, "generate", "gan", "--preset", "tiny", "--samples", "2", "--render", "0",
             "--clip-check", "1", "--out", tmp_path / "g", "--no-progress")
    assert r.exit_code != 0 and "no CLIP maps" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "g").exists() or not any((tmp_path / "g").iterdir())
    r = _run(gen_workspace, "generate", "gan", "--preset", "tiny", "--samples", "2", "--render", "0",
             "--clip-check", "-1", "--out", tmp_path / "h", "--no-progress")
    assert r.exit_code != 0 and "--clip-check" in r.output, r.output
