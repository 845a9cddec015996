"""The render decoder (``EncoderConfig.refit_steps``, nfkit/encoder/refit.py): its loss, its
whitening, and what pretrain-encoder stores and every later stage loads."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from nfkit.encoder.checkpoint import load_checkpoint, save_checkpoint
from nfkit.encoder.config import resolve_config
from nfkit.encoder.embed import load_encoder
from nfkit.encoder.refit import RENDER_DECODER, refit_spec
from nfkit.encoder.train import pretrain_encoder
from nfkit.errors import ConfigError
from nfkit.losses import distillation_loss
from nfkit.models.decoder import DecoderSpec, ImplicitDecoder


def test_distillation_loss_is_the_opacity_cross_entropy_plus_the_weighted_colour_error():
    step = 0.5
    # point 0: student opacity 1/2 (sigma*step = ln 2) against a teacher's 1/2; point 1: an empty
    # teacher point where the student has optical depth 0.2; point 2: both opaque-ish
    sigma = torch.tensor([[math.log(2.0) / step, 0.2 / step, 4.0 / step]])
    alpha_t = torch.tensor([[0.5, 0.0, 1.0]])
    rgb = torch.tensor([[[0.5, 0.5, 0.5], [0.9, 0.9, 0.9], [0.2, 0.2, 0.2]]])
    rgb_t = torch.tensor([[[0.6, 0.5, 0.5], [0.0, 0.0, 0.0], [0.2, 0.2, 0.5]]])
    loss = distillation_loss(sigma, rgb, alpha_t, rgb_t, step)
    density = (0.5 * math.log(2.0) + 0.5 * math.log(2.0) + 0.2 - math.log(1.0 - math.exp(-4.0))) / 3
    # colour: weighted by the teacher's opacity (the empty point's colour does not count)
    colour = (0.5 * 0.01 + 1.0 * 0.09) / 1.5
    assert abs(loss.item() - (density + colour)) < 1e-5
    with pytest.raises(ValueError, match="shapes differ"):
        distillation_loss(sigma, rgb, alpha_t[:, :2], rgb_t, step)


def test_empty_space_costs_the_density_linearly():
    step = 0.1
    sigma = torch.tensor([0.01, 1.0, 10.0], requires_grad=True)
    loss = distillation_loss(sigma, torch.zeros(3, 3), torch.zeros(3), torch.zeros(3, 3), step)
    loss.backward()
    assert torch.allclose(sigma.grad, torch.full((3,), step / 3))


def _low_rank(n=40, d=12, rank=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.5])[:rank]
    basis = torch.linalg.qr(torch.randn(d, rank, generator=g))[0]
    return (torch.randn(n, rank, generator=g) * scales) @ basis.T + torch.randn(d, generator=g)


def test_whitening_gives_the_top_components_unit_variance_and_zero_beyond_the_rank():
    x = _low_rank()
    dec = ImplicitDecoder(DecoderSpec(12, 8, 2, whiten_dims=7))
    dec.set_whitening(x)
    z = ((x - dec.whiten_mean) @ dec.whiten_matrix).double()
    np.testing.assert_allclose(z.mean(0).numpy(), 0.0, atol=1e-4)
    cov = torch.cov(z[:, :5].T)
    np.testing.assert_allclose(cov.numpy(), np.eye(5), atol=1e-3)
    # the data has rank 5: the 6th and 7th components read zero instead of amplified round-off
    assert dec.whiten_matrix[:, 5:].abs().max() == 0
    # the sign convention: every direction's largest entry is positive, so a reordering of the
    # rows (another order of the same embeddings) gives the same whitening
    dec2 = ImplicitDecoder(DecoderSpec(12, 8, 2, whiten_dims=7))
    dec2.set_whitening(x[torch.randperm(len(x), generator=torch.Generator().manual_seed(1))])
    np.testing.assert_allclose(dec2.whiten_matrix.numpy(), dec.whiten_matrix.numpy(), atol=1e-3)
    # the first layer reads whiten_dims coordinates: the decoder still takes (B, 12) embeddings
    rgb, sigma = dec(x[:3], torch.zeros(3, 5, 3))
    assert rgb.shape == (3, 5, 3) and sigma.shape == (3, 5)
    with pytest.raises(ValueError, match="raw embedding"):
        ImplicitDecoder(DecoderSpec(12, 8, 2)).set_whitening(x)
    with pytest.raises(ValueError, match="cannot exceed"):
        DecoderSpec(12, 8, 2, whiten_dims=13)


def test_refit_settings_are_checked():
    with pytest.raises(ConfigError, match="refit_dims"):
        resolve_config("tiny", {"refit_dims": 10**6})
    with pytest.raises(ConfigError, match="refit_points"):
        resolve_config("tiny", {"refit_points": 1000, "refit_pool": 10})
    # loss c trains no decoder: the setting is ignored there
    assert resolve_config("tiny", {"loss": "c"}).refit_steps == 10


def test_pretrain_stores_a_render_decoder_that_every_stage_loads_and_leaves_the_encoder_alone(tiny_workspace, tmp_path):
    from typer.testing import CliRunner

    from nfkit.cli import app

    graphs, nerfs = tiny_workspace / "graphs", tiny_workspace / "nerfs"
    common = ["--preset", "tiny", "--loss", "r+c", "--set", "refit_steps=200", "--set", "refit_lr=3e-3", "--no-progress"]
    r = CliRunner().invoke(app, ["pretrain-encoder", str(graphs), str(nerfs), *common, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "render decoder: 200 steps" in r.output and "own grid" in r.output
    log = json.loads((tmp_path / "a" / "train_log.json").read_text())
    fit = log["render_decoder"]
    assert fit["refit_steps"] == 200 and fit["refit_nerfs"] > 2
    # it learns: the mean loss of the last tenth of the steps is below that of the first tenth
    assert fit["refit_loss_last"] < fit["refit_loss_first"]
    assert math.isfinite(fit["val_own_grid_psnr"]) and math.isfinite(fit["val_own_grid_psnr_training_decoder"])
    best, last = load_checkpoint(tmp_path / "a" / "best.h5"), load_checkpoint(tmp_path / "a" / "last.h5")
    assert RENDER_DECODER in best.state and "decoder" in best.state  # the training decoder stays
    if last.encoder_fingerprint == best.encoder_fingerprint:
        assert RENDER_DECODER in last.state
    enc = load_encoder(tmp_path / "a" / "best.h5")
    spec = enc.model.decoder.spec
    assert spec == refit_spec(best.config) and spec.whiten_dims == 8 and spec.freq_bands == 4
    assert not enc.model.decoder.whiten_matrix.eq(0).all()
    # the refit does not touch the encoder: the same run without it has the same encoder
    plain = ["--preset", "tiny", "--loss", "r+c", "--set", "refit_steps=0", "--no-progress"]
    r = CliRunner().invoke(app, ["pretrain-encoder", str(graphs), str(nerfs), *plain, "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    other = load_checkpoint(tmp_path / "b" / "best.h5")
    assert other.encoder_fingerprint == best.encoder_fingerprint and RENDER_DECODER not in other.state
    assert "render_decoder" not in json.loads((tmp_path / "b" / "train_log.json").read_text())
    assert load_encoder(tmp_path / "b" / "best.h5").model.decoder.spec.whiten_dims == 0


def test_a_run_killed_before_the_render_decoder_gets_it_on_resume(tiny_workspace, tmp_path):
    graphs, nerfs = tiny_workspace / "graphs", tiny_workspace / "nerfs"
    cfg = resolve_config("tiny", {"loss": "r+c"})
    pretrain_encoder(graphs, nerfs, tmp_path / "run", cfg, progress=False)
    path = tmp_path / "run" / "best.h5"
    done = load_checkpoint(path, with_resume=True)
    want = done.state[RENDER_DECODER]
    for p in (path, tmp_path / "run" / "last.h5"):  # as if killed after the epochs
        ck = load_checkpoint(p, with_resume=True)
        ck.state = {k: v for k, v in ck.state.items() if k != RENDER_DECODER}
        save_checkpoint(p, ck)
    summary = pretrain_encoder(graphs, nerfs, tmp_path / "run", cfg, resume=True, progress=False)
    assert summary.epochs_run == 0 and summary.refit is not None
    got = load_checkpoint(path).state[RENDER_DECODER]
    for name, t in want.items():  # deterministic: the same decoder again
        np.testing.assert_allclose(got[name].numpy(), t.numpy(), atol=1e-5, err_msg=name)
    # and a rerun with everything done does not fit it again
    assert pretrain_encoder(graphs, nerfs, tmp_path / "run", cfg, resume=True, progress=False).refit is None


def test_a_render_decoder_of_other_settings_is_a_one_line_error(tiny_workspace, tmp_path):
    from nfkit.io.artifacts import ArtifactError

    graphs, nerfs = tiny_workspace / "graphs", tiny_workspace / "nerfs"
    pretrain_encoder(graphs, nerfs, tmp_path / "run", resolve_config("tiny", {"loss": "r+c", "refit_steps": 2}), progress=False)
    path = tmp_path / "run" / "best.h5"
    ck = load_checkpoint(path, with_resume=True)
    bad = dict(ck.state[RENDER_DECODER])
    bad["l1.weight"] = torch.zeros(3, 3)
    ck.state = {**ck.state, RENDER_DECODER: bad}
    save_checkpoint(path, ck)
    with pytest.raises(ArtifactError, match="render decoder does not match"):
        load_encoder(path)


def test_resume_with_other_refit_settings_refits_and_keeps_the_encoder(tiny_workspace, tmp_path):
    from nfkit.errors import IncompatibleError

    graphs, nerfs = tiny_workspace / "graphs", tiny_workspace / "nerfs"
    pretrain_encoder(graphs, nerfs, tmp_path / "run", resolve_config("tiny", {"loss": "r+c"}), progress=False)
    best = tmp_path / "run" / "best.h5"
    before = load_checkpoint(best)
    cfg = resolve_config("tiny", {"loss": "r+c", "refit_steps": 20, "refit_dims": 4})
    summary = pretrain_encoder(graphs, nerfs, tmp_path / "run", cfg, resume=True, progress=False)
    assert summary.epochs_run == 0 and summary.refit is not None and summary.refit["refit_steps"] == 20
    after = load_checkpoint(best)
    assert after.encoder_fingerprint == before.encoder_fingerprint and after.config.refit_dims == 4
    assert load_encoder(best).model.decoder.spec.whiten_dims == 4
    # a setting of the encoder itself still refuses to resume
    with pytest.raises(IncompatibleError, match="other settings"):
        pretrain_encoder(graphs, nerfs, tmp_path / "run", resolve_config("tiny", {"loss": "r+c", "lr": 0.5}),
                         resume=True, progress=False)
