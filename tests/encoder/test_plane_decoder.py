"""The tri-plane render decoder (nfkit/models/plane_decoder.py): where each texel sits, what a
point reads, and that pretrain-encoder fits, stores and reloads it for every stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nfkit.models.plane_decoder import (
    PLANE_AXES,
    PlaneDecoder,
    PlaneDecoderSpec,
    plane_decoder_flops,
)
from nfkit.nerf.field import AABB


def _spec(**kw):
    base = {"embed_dim": 6, "whiten_dims": 3, "hidden": 8, "channels": 2, "resolution": 4, "mlp_hidden": 8, "freq_bands": 1}
    return PlaneDecoderSpec(**{**base, **kw})


def _world(u):
    lo, hi = AABB
    return lo + torch.as_tensor(u, dtype=torch.float32) * (hi - lo)


def test_a_point_at_a_texel_centre_reads_that_texel_of_each_plane():
    spec = _spec()
    dec = PlaneDecoder(spec)
    r = spec.resolution
    planes = torch.zeros(1, 3, spec.channels, r, r)
    # a distinct value per (plane, channel, row, column)
    planes += torch.arange(3 * spec.channels * r * r, dtype=torch.float32).view(1, 3, spec.channels, r, r)
    # the texel [i, j] = [2, 1]: axis a at (1 + 1/2)/4, axis b at (2 + 1/2)/4, for each plane
    seen = []

    def grab(module, inputs, output):
        seen.append(inputs[0])

    dec.planes = lambda e: planes  # the generator's output replaced by known planes
    hook = dec.p1.register_forward_hook(grab)
    i, j = 2, 1
    for p, (a, b) in enumerate(PLANE_AXES):
        u = torch.full((3,), 0.3)
        u[a], u[b] = (j + 0.5) / r, (i + 0.5) / r
        seen.clear()
        dec.raw(torch.zeros(1, spec.embed_dim), _world(u)[None, None])
        feats = seen[0][0, 0, p * spec.channels : (p + 1) * spec.channels]
        np.testing.assert_allclose(feats.numpy(), planes[0, p, :, i, j].numpy(), atol=1e-4)
    hook.remove()


def test_halfway_between_two_texels_reads_their_mean_and_beyond_the_last_the_border():
    spec = _spec(channels=1)
    dec = PlaneDecoder(spec)
    r = spec.resolution
    planes = torch.zeros(1, 3, 1, r, r)
    planes[0, 0, 0, 1, 0], planes[0, 0, 0, 1, 1] = 2.0, 4.0  # plane xy, row 1, columns 0 and 1
    dec.planes = lambda e: planes
    seen = []
    hook = dec.p1.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    u = torch.tensor([[1.0 / r, 1.5 / r, 0.5], [0.01, 1.5 / r, 0.5]])  # x between columns 0 and 1; x before column 0
    dec.raw(torch.zeros(1, spec.embed_dim), _world(u)[None])
    hook.remove()
    np.testing.assert_allclose(seen[0][0, :, 0].numpy(), [3.0, 2.0], atol=1e-5)


def test_shapes_whitening_outside_the_box_and_gradients():
    spec = _spec()
    dec = PlaneDecoder(spec)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(5, spec.embed_dim, generator=g)
    dec.set_whitening(emb)
    z = dec.code(emb).double()
    np.testing.assert_allclose(z.mean(0).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0).numpy(), 1.0, atol=1e-3)
    x = _world(torch.rand(2, 7, 3, generator=g))
    x[1, 0] = torch.tensor([9.0, 0.0, 0.0])  # outside the box
    rgb, sigma = dec(emb[:2], x)
    assert rgb.shape == (2, 7, 3) and sigma.shape == (2, 7)
    assert sigma[1, 0] == 0 and (sigma[0] > 0).all() and ((rgb > 0) & (rgb < 1)).all()
    (rgb.sum() + sigma.sum()).backward()
    for name in ("g1.weight", "g3.weight", "p1.weight", "out.weight"):
        assert dict(dec.named_parameters())[name].grad.abs().sum() > 0, name
    # two embeddings, two fields
    assert not torch.allclose(dec.planes(emb[:1]), dec.planes(emb[1:2]))
    with pytest.raises(ValueError, match="embeddings of shape"):
        dec(torch.zeros(2, 5), x)
    with pytest.raises(ValueError, match="positions of shape"):
        dec(emb[:2], x[:1])
    with pytest.raises(ValueError, match="cannot exceed"):
        _spec(whiten_dims=7)
    with pytest.raises(ValueError, match="positive"):
        _spec(resolution=1)


def test_flops_count_the_generator_once_per_object():
    spec = PlaneDecoderSpec(1024)
    one, two = plane_decoder_flops(spec, 0, 1), plane_decoder_flops(spec, 0, 2)
    assert two == 2 * one == 2 * 2.0 * (32 * 128 + 128 * 128 + 128 * 3 * 8 * 32 * 32)
    per_point = plane_decoder_flops(spec, 1, 0)
    assert per_point == 2.0 * ((24 + 24) * 64 + 64 * 64 + 4 * 64)


def test_pretrain_fits_a_planes_render_decoder_that_every_stage_loads(tiny_workspace, tmp_path):
    from nfkit.encoder.checkpoint import load_checkpoint
    from nfkit.encoder.config import resolve_config
    from nfkit.encoder.embed import load_encoder
    from nfkit.encoder.refit import RENDER_DECODER, refit_spec
    from nfkit.encoder.train import pretrain_encoder

    graphs, nerfs = tiny_workspace / "graphs", tiny_workspace / "nerfs"
    over = {"loss": "r", "refit_decoder": "planes", "refit_steps": 60, "refit_lr": 3e-3, "refit_plane_res": 8,
            "refit_plane_channels": 4}
    summary = pretrain_encoder(graphs, nerfs, tmp_path / "run", resolve_config("tiny", over), progress=False)
    fit = summary.refit
    assert fit is not None and fit["refit_loss_last"] < fit["refit_loss_first"]
    ck = load_checkpoint(tmp_path / "run" / "best.h5")
    assert ck.config.refit_decoder == "planes" and "g3.weight" in ck.state[RENDER_DECODER]
    dec = load_encoder(tmp_path / "run" / "best.h5").model.decoder
    assert isinstance(dec, PlaneDecoder) and dec.spec == refit_spec(ck.config)
    assert dec.spec.resolution == 8 and dec.spec.channels == 4
    # resume with the other kind refits it and keeps the encoder
    summary = pretrain_encoder(graphs, nerfs, tmp_path / "run", resolve_config("tiny", {**over, "refit_decoder": "mlp"}),
                               resume=True, progress=False)
    assert summary.epochs_run == 0 and summary.refit is not None
    after = load_checkpoint(tmp_path / "run" / "best.h5")
    assert after.encoder_fingerprint == ck.encoder_fingerprint
    assert not isinstance(load_encoder(tmp_path / "run" / "best.h5").model.decoder, PlaneDecoder)
