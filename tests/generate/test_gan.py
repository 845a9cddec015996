"""The latent GAN: shapes, determinism, training moves samples to their class, the artifact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nfkit.errors import ConfigError, UserError
from nfkit.generate.gan import PRESETS, load_gan, sample_gan, save_gan, train_gan
from nfkit.io.artifacts import ArtifactError
from nfkit.models.gan import LatentCritic, LatentGenerator

DIM = 16


def _clusters(seed=0):
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.normal(size=(2, DIM))) * 3.0
    data = [np.abs(c + rng.normal(size=(24, DIM)) * 0.2).astype(np.float32) for c in centres]
    return centres, data


def test_modules_shapes_and_checks():
    g, d = LatentGenerator(DIM, 8, 12), LatentCritic(DIM, (6, 7))
    z = g.noise(5)
    assert z.shape == (5, 8) and g(z).shape == (5, DIM) and (g(z) >= 0).all()
    assert d(torch.zeros(3, DIM)).shape == (3, 1)
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        g(torch.zeros(2, 9))
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        d(torch.zeros(2, 3))


def test_training_moves_samples_toward_their_class():
    centres, (a, b) = _clusters()
    cfg = PRESETS["tiny"]
    untrained = train_gan(a, cfg.override({"epochs": 1}), "a")
    gan = train_gan(a, cfg, "a")
    before = np.linalg.norm(sample_gan(untrained, 64) - centres[0], axis=1).mean()
    s = sample_gan(gan, 64)
    to_a = np.linalg.norm(s - centres[0], axis=1).mean()
    to_b = np.linalg.norm(s - centres[1], axis=1).mean()
    spread = np.linalg.norm(a - centres[0], axis=1).mean()
    assert to_a < 0.5 * before, (to_a, before)
    assert to_a < 0.5 * to_b, (to_a, to_b)
    assert to_a < 3 * spread, (to_a, spread)  # near the cluster, not merely on its side
    assert s.std(axis=0).mean() > 0.01  # not a single point


def test_training_is_deterministic_and_leaves_the_global_rng_alone():
    _, (a, _) = _clusters()
    cfg = PRESETS["tiny"].override({"epochs": 5})
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    g1, g2 = train_gan(a, cfg), train_gan(a, cfg)
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(sample_gan(g1, 4, seed=3), sample_gan(g2, 4, seed=3))
    assert not np.array_equal(sample_gan(g1, 4, seed=3), sample_gan(g1, 4, seed=4))


def test_artifact_roundtrip_and_refusals(tmp_path):
    _, (a, _) = _clusters()
    gan = train_gan(a, PRESETS["tiny"].override({"epochs": 3}), "chair", "enc0", ["mlp"])
    path = save_gan(tmp_path / "chair.h5", gan)
    back = load_gan(path)
    assert (back.class_name, back.encoder_fingerprint, back.archs, back.n_train) == ("chair", "enc0", ["mlp"], 24)
    assert back.config == gan.config
    np.testing.assert_array_equal(sample_gan(back, 5, seed=1), sample_gan(gan, 5, seed=1))
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ArtifactError, match="junk.h5"):
        load_gan(tmp_path / "junk.h5")
    with pytest.raises(UserError, match="at least 2"):
        train_gan(a[:1], PRESETS["tiny"])
    with pytest.raises(ConfigError, match="lr"):
        PRESETS.resolve("tiny", {"lr": "-1"})
