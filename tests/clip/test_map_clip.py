"""map-clip on a tiny workspace, the maps' learning on a synthetic linear relation, refusals,
and the zero-shot / retrieval CLIs end to end through CliRunner."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.clip.cache import read_clip_cache
from nfkit.clip.maps import PRESETS, Pairs, load_maps, shuffled, train_pair
from nfkit.embed.store import load_embeddings
from nfkit.errors import IncompatibleError

from .conftest import make_embeddings

MICRO = ["--clip-model", "nfkit-clip-micro", "--clip-pretrained", "none"]


def _invoke(args, ok=True):
    r = CliRunner().invoke(app, args)
    if ok:
        assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def mapped_ws(clip_ws, tmp_path_factory):
    """A copy of the tiny workspace after `nfkit map-clip` (tiny preset, micro CLIP, 4 GT views)."""
    ws = tmp_path_factory.mktemp("mapped") / "ws"
    shutil.copytree(clip_ws, ws)
    _invoke(["--workspace", str(ws), "map-clip", str(ws / "embeddings"), str(ws / "data"), *MICRO,
             "--preset", "tiny", "--no-progress", "--device", "cpu"])
    return ws


def test_map_clip_writes_maps_and_cache(mapped_ws):
    maps = load_maps(mapped_ws / "clip" / "maps.h5")
    assert maps.clip_model == "nfkit-clip-micro" and maps.encoder_fingerprint == "enc0" and maps.views == "gt"
    assert (maps.embed_dim, maps.clip_dim) == (16, 32) and maps.control is not None
    assert maps.nerf2clip.hidden == (32,) and maps.config["preset"] == "tiny"
    (cache_path,) = (mapped_ws / "clip").glob("cache-gt-4v-*.h5")
    cache = read_clip_cache(cache_path)
    assert cache.embedding.shape == (12, 4, 32) and cache.clip_fingerprint == maps.clip_fingerprint
    assert all(c.startswith("a 3d model of") for c in cache.meta["caption"])
    summary = json.loads((mapped_ws / "clip" / "map-clip.json").read_text())
    assert set(summary["metrics"]) == {"train", "val", "test"} and summary["n_embeddings"] == 24
    status = _invoke(["status", str(mapped_ws), "--no-check"])
    assert "clip-maps" in status.output and "clip-cache" in status.output


def test_maps_learn_a_relation_the_control_cannot():
    rng = np.random.default_rng(0)
    n, e, d, v = 120, 12, 8, 3
    nerf = rng.normal(size=(n, e)).astype(np.float32)
    proj = rng.normal(size=(e, d)).astype(np.float32)
    views = (nerf @ proj)[:, None, :] + 0.05 * rng.normal(size=(n, v, d)).astype(np.float32)
    split = np.array(["train"] * 90 + ["val"] * 10 + ["test"] * 20)
    pairs = Pairs(nerf, views, split, np.array([f"c/o{i}" for i in range(n)]), np.array(["c"] * n), np.array(["mlp"] * n))
    cfg = PRESETS["tiny"].override({"nerf2clip.epochs": "60", "clip2nerf.epochs": "40", "hidden": "64"})
    real = train_pair(pairs, cfg)["metrics"]["test"]
    control = train_pair(shuffled(pairs, 0), cfg)["metrics"]["test"]
    assert real["nerf2clip_cosine"] > 0.9 and real["clip2nerf_cosine"] > 0.7
    assert control["nerf2clip_cosine"] < 0.4 and control["clip2nerf_cosine"] < 0.4


def test_refusals(mapped_ws, tmp_path):
    maps = load_maps(mapped_ws / "clip" / "maps.h5")
    with pytest.raises(IncompatibleError, match="CLIP weights"):
        maps.check_clip("0123456789abcdef")
    other = load_embeddings(make_embeddings(tmp_path / "e7", mapped_ws / "data", encoder="enc7"))
    with pytest.raises(IncompatibleError, match="encoder enc7"):
        maps.check_embeddings(other)
    # the CLI: a query with another CLIP, a gallery of another encoder, a bad photo
    photo = tmp_path / "p.png"
    Image.new("RGB", (30, 20), (200, 30, 30)).save(photo)
    r = _invoke(["--workspace", str(mapped_ws), "retrieve", "--query", str(photo), "--clip-model", "nfkit-clip-micro",
                 "--clip-pretrained", "none", "--no-picture", "--device", "cpu"], ok=True)
    assert "query" in r.output  # the same (seeded) random CLIP is accepted
    ckpt = tmp_path / "other.pt"
    import torch

    from nfkit.clip.backend import load_clip

    torch.save({"state_dict": load_clip("nfkit-clip-micro", None, seed=5).model.state_dict()}, ckpt)
    r = _invoke(["--workspace", str(mapped_ws), "retrieve", "--query", str(photo), "--clip-pretrained", str(ckpt),
                 "--no-picture", "--device", "cpu"], ok=False)
    assert r.exit_code == 1 and "CLIP weights" in r.output and len(r.output.strip().splitlines()) == 1
    r = _invoke(["--workspace", str(mapped_ws), "retrieve", str(tmp_path / "e7"), "--query", str(photo),
                 "--no-picture", "--device", "cpu"], ok=False)
    assert r.exit_code == 1 and "encoder enc7" in r.output
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    r = _invoke(["--workspace", str(mapped_ws), "retrieve", "--query", str(empty), "--device", "cpu"], ok=False)
    assert r.exit_code == 1 and "empty file" in r.output and len(r.output.strip().splitlines()) == 1


def test_retrieve_query_photo_verbatim(mapped_ws, tmp_path, monkeypatch):
    """`nfkit retrieve --query photo.jpg` in the workspace, with every default."""
    img = Image.new("RGB", (64, 40), (20, 20, 20))
    img.paste((240, 200, 40), (20, 10, 44, 30))  # a picture nfkit did not render
    exif = img.getexif()
    exif[0x0112] = 8
    img.save(mapped_ws / "photo.jpg", exif=exif)
    monkeypatch.chdir(mapped_ws)
    r = _invoke(["retrieve", "--query", "photo.jpg", "--no-progress", "--device", "cpu", "--resolution", "16"])
    lines = [ln for ln in r.output.splitlines() if ln[:1].isdigit()]
    assert len(lines) == 5 and all(ln.split("\t")[2] in ("mlp", "tri") for ln in lines)
    png = mapped_ws / "retrieve" / "query-photo-clip2nerf.png"
    assert png.is_file() and Image.open(png).size[0] > 100
    # both modalities, a multi-view query of two photos, the reverse modality's gallery
    grey = tmp_path / "g.png"
    Image.new("L", (17, 33), 128).save(grey)
    r = _invoke(["retrieve", "--query", "photo.jpg", "--query", str(grey), "--modality", "both", "--top-k", "3",
                 "--no-picture", "--device", "cpu"])
    assert "(clip2nerf)" in r.output and "(nerf2clip)" in r.output
    assert len([ln for ln in r.output.splitlines() if ln[:1].isdigit()]) == 6


def test_retrieve_text_and_clip_eval(mapped_ws):
    ws = ["--workspace", str(mapped_ws)]
    r = _invoke([*ws, "retrieve", "--text", "a 3d model of a red car", "--modality", "nerf2clip", "--device", "cpu",
                 "--resolution", "16"])
    assert "(nerf2clip)" in r.output and (mapped_ws / "retrieve" / "query-text-a-3d-model-of-a-red-car-nerf2clip.png").is_file()
    r = _invoke([*ws, "retrieve", "--clip-eval", "--no-progress", "--device", "cpu", "--k", "1", "--k", "3"])
    data = json.loads((mapped_ws / "retrieve" / "clip-retrieval.json").read_text())["results"]
    img = data["image -> NeRF (gt query views of the test objects)"]
    assert set(img) == {"clip2nerf", "nerf2clip"}
    rows = img["clip2nerf"]
    assert {"single-view", "multi-view (4)", "single-view (shuffled control)", "multi-view (4) (shuffled control)"} <= set(rows)
    assert rows["single-view"]["n_queries"] == 3 * 4  # 3 test objects x 4 views
    assert rows["multi-view (4)"]["hit@1"] <= rows["multi-view (4)"]["hit@3"]
    assert data["text -> NeRF"]["nerf2clip"]["class prompts"]["n_queries"] == 3
    assert "| clip2nerf | single-view |" in r.output
    # one test object per class: its own object removed, nothing of its class is left
    assert rows["single-view"]["no_match"] == 12
    # a gallery of every split: the same test queries, now each with relevant NeRFs
    _invoke([*ws, "retrieve", "--clip-eval", "--split", "all", "--modality", "clip2nerf", "--no-progress", "--device", "cpu"])
    data = json.loads((mapped_ws / "retrieve" / "clip-retrieval.json").read_text())["results"]
    rows = data["image -> NeRF (gt query views of the test objects)"]["clip2nerf"]
    assert rows["single-view"]["n_queries"] == 12 and rows["single-view"]["no_match"] == 0
    assert 0.0 <= rows["single-view"]["hit@1"] <= rows["single-view"]["hit@10"] <= 1.0


def test_clip_eval_rendered_query_views(mapped_ws):
    r = _invoke(["--workspace", str(mapped_ws), "retrieve", "--clip-eval", "--query-views", "rendered", "--arch", "mlp",
                 "--modality", "clip2nerf", "--no-progress", "--device", "cpu"])
    assert "rendered query views" in r.output
    assert list((mapped_ws / "clip").glob("cache-rendered-4v-*.h5"))


def test_zero_shot_with_baseline(mapped_ws):
    r = _invoke(["--workspace", str(mapped_ws), "classify", "--zero-shot", "--prompt", "a photo of {}", "--prompt",
                 "a 3d model of {}", "--baseline-views", "1", "--baseline-views", "2", "--render-resolution", "12",
                 "--no-progress", "--device", "cpu"])
    data = json.loads((mapped_ws / "classify" / "zero-shot.json").read_text())
    methods = [row["method"] for row in data["rows"]]
    assert methods[:2] == ["nerf2clip", "nerf2clip (shuffled control)"]
    assert "render 1 view(s) + CLIP" in methods and "render 2 view(s) + CLIP" in methods
    assert "CLIP on 2 ground-truth view(s)" in methods
    rows = {row["method"]: row for row in data["rows"]}
    assert rows["nerf2clip"]["n"] == 6 and rows["render 2 view(s) + CLIP"]["n"] == 3  # 2 archs embedded, 1 rendered
    assert rows["render 2 view(s) + CLIP"]["ms_per_nerf"] > rows["nerf2clip"]["ms_per_nerf"] > 0
    assert data["templates"] == ["a photo of {}", "a 3d model of {}"] and data["classes"] == ["airplane", "car", "chair"]
    assert "| nerf2clip |" in r.output
    bad = _invoke(["--workspace", str(mapped_ws), "classify", "--zero-shot", "--prompt", "no slot"], ok=False)
    assert bad.exit_code == 1 and "exactly one {}" in bad.output


def test_cache_is_extended_not_recomputed(clip_ws, micro_clip, tmp_path):
    from nfkit.clip.stage import build_cache

    es = load_embeddings(clip_ws / "embeddings")
    test = es.select(split="test")
    first = build_cache(test, micro_clip, "gt", 2, tmp_path, dataset=clip_ws / "data")
    assert len(first) == 3
    full = build_cache(es, micro_clip, "gt", 2, tmp_path, dataset=clip_ws / "data")
    assert len(full) == 12 and len(list(tmp_path.glob("cache-gt-2v-*.h5"))) == 1
    np.testing.assert_array_equal(full.embedding[:3], first.embedding)
    again = build_cache(test, micro_clip, "gt", 2, tmp_path, dataset=clip_ws / "data")
    assert len(again) == 12  # reused as it is
    # the same objects from the NeRF shards' recorded object folders (no DATASET)
    other = build_cache(test, micro_clip, "gt", 2, tmp_path / "n", nerfs=clip_ws / "nerfs")
    np.testing.assert_allclose(other.embedding, first.embedding, atol=1e-6)
