"""open_clip backend (seeded random models, fingerprints, errors) and the small CLIP that
train-clip trains: its checkpoint reloads through open_clip exactly like a real model."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.clip.backend import load_clip, open_clip_module, weights_fingerprint
from nfkit.clip.captions import caption_variants, class_prompts, colour_name, object_caption
from nfkit.clip.train_clip import PRESETS, multi_positive_loss, train_clip
from nfkit.errors import UserError


def test_random_models_are_seeded_and_fingerprinted(micro_clip):
    again = load_clip("nfkit-clip-micro", "none")
    assert again.fingerprint == micro_clip.fingerprint
    other = load_clip("nfkit-clip-micro", None, seed=1)
    assert other.fingerprint != micro_clip.fingerprint
    img = micro_clip.encode_images([np.random.default_rng(0).random((40, 30, 3), dtype=np.float32)] * 3, batch_size=2)
    assert img.shape == (3, 32) and np.allclose(img[0], img[2], atol=1e-5)
    assert micro_clip.encode_texts(["a photo of a car", "x"]).shape == (2, 32)
    assert micro_clip.embed_dim == 32


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="unknown open_clip model"):
        load_clip("ViT-Q-99", None)
    with pytest.raises(UserError, match="no such checkpoint file"):
        load_clip("nfkit-clip-micro", str(tmp_path / "nope.pt"))
    with pytest.raises(UserError, match="not a file and not a pretrained tag"):
        load_clip("nfkit-clip-micro", "openai")
    junk = tmp_path / "junk.pt"
    torch.save({"state_dict": {"visual.nothing": torch.zeros(1)}}, junk)
    with pytest.raises(UserError, match="could not be loaded") as exc:
        load_clip("nfkit-clip-micro", str(junk))
    assert "\n" not in str(exc.value)


def test_captions_and_prompts(clip_ws):
    assert colour_name((0.5, 0.1, 0.6)) == "purple" and colour_name((0.1, 0.2, 0.9)) == "blue"
    assert colour_name((0.95, 0.95, 0.95)) == "white" and colour_name((0.9, 0.1, 0.1)) == "red"
    assert class_prompts(["airplane", "car"], ["a 3d model of {}"]) == [["a 3d model of an airplane"], ["a 3d model of a car"]]
    with pytest.raises(UserError, match="exactly one"):
        class_prompts(["car"], ["a photo"])
    folder = next((clip_ws / "data").glob("*/airplane_0000"))
    cap = object_caption("airplane", folder)
    assert cap.startswith("a 3d model of a") and cap.endswith("airplane") and len(cap.split()) == 7
    assert object_caption("car", None) == "a 3d model of a car"
    assert "a photo of a car" in caption_variants("car", "red") and "a red car" in caption_variants("car", "red")


def test_multi_positive_loss_prefers_the_right_caption():
    img = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1.0, 0.1], [0, 1.0]]), dim=-1)
    txt = torch.tensor([[1.0, 0], [0, 1.0]])
    right = multi_positive_loss(img, txt, torch.tensor([0, 0, 1]), torch.tensor(10.0))
    wrong = multi_positive_loss(img, txt, torch.tensor([1, 1, 0]), torch.tensor(10.0))
    # caption 0 is shared by two images: its best text->image loss is log 2 (half on each)
    assert float(right) == pytest.approx(0.25 * np.log(2), abs=0.01)
    assert float(wrong) > 5.0


def test_small_clip_checkpoint_loads_like_a_real_model(clip_ws, tmp_path, caplog):
    ckpt = tmp_path / "clip.pt"
    with caplog.at_level(logging.WARNING):
        s = train_clip(clip_ws / "data", ckpt, PRESETS["tiny"].override({"split": "all"}))
    # training from a random init is the point: open_clip's warning about it is not shown
    assert not [r for r in caplog.records if "No pretrained weights" in r.getMessage()]
    assert ckpt.is_file() and s.n_objects == 12 and s.steps >= 2 and np.isfinite(s.final_loss)
    oc = open_clip_module()
    model = oc.create_model("nfkit-clip-micro", pretrained=str(ckpt)).eval()
    ours = load_clip("nfkit-clip-micro", str(ckpt))
    assert ours.fingerprint == weights_fingerprint(model)
    assert ours.fingerprint != load_clip("nfkit-clip-micro", None).fingerprint  # it did train
    x = torch.rand(2, 3, 32, 32)
    tokens = oc.get_tokenizer("nfkit-clip-micro")(["a 3d model of a car", "a photo of a chair"])
    with torch.no_grad():
        assert torch.equal(model.encode_image(x), ours.model.encode_image(x))
        assert torch.equal(model.encode_text(tokens), ours.model.encode_text(tokens))


def test_train_clip_cli(clip_ws, tmp_path):
    out = tmp_path / "c.pt"
    r = CliRunner().invoke(app, ["train-clip", str(clip_ws / "data"), "--out", str(out), "--preset", "tiny",
                                 "--set", "epochs=1", "--no-progress", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "--clip-model nfkit-clip-micro --clip-pretrained" in r.output and out.is_file()
    bad = CliRunner().invoke(app, ["train-clip", str(clip_ws / "data"), "--out", str(tmp_path), "--preset", "tiny"])
    assert bad.exit_code == 1 and "is a folder" in bad.output


def test_the_small_clip_config_builds():
    clip = load_clip("nfkit-clip-small", None)
    assert clip.image_size == 48 and clip.embed_dim == 256
    assert clip.encode_images([np.zeros((60, 90, 3), np.float32)]).shape == (1, 256)
