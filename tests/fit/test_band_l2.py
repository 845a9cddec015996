"""The L2 penalty on the first layer's weights of high frequency bands (FitConfig.band_l2)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nfkit.errors import ConfigError
from nfkit.fit.config import PRESETS, resolve_config
from nfkit.fit.trainer import (
    TorchBatchedNerfs,
    band_columns,
    band_penalty,
    fit_batch,
)
from nfkit.nerf.encodings import frequency_encoding
from nfkit.nerf.init import create_init
from nfkit.nerf.specs import REGISTRY


def test_band_columns_read_those_bands():
    for name in ("mlp", "tri"):
        spec = REGISTRY[name]
        cols = band_columns(spec, 5)
        offset = spec.tri_channels if spec.family == "tri" else 0
        assert len(cols) == 3 * 2 * (spec.freq_bands - 5)
        n = spec.freq_bands
        # the encoding's layout (output d*2n + 2f + phase: input dimension d, band f)
        expected = sorted(offset + d * 2 * n + 2 * f + p for d in range(3) for f in range(5, n) for p in (0, 1))
        assert cols.tolist() == expected
        # and what those columns read: moving u by 2^-4, a period of every band >= 5 but of no
        # lower band, changes the lower bands only (bands 5-11, where float32 keeps it exact)
        u = torch.tensor([[[0.25, 0.5, 0.125]]])
        delta = frequency_encoding(u + 2.0**-4, n)[0, 0] - frequency_encoding(u, n)[0, 0]
        band = (torch.arange(3 * 2 * n) // 2) % n
        assert delta[(band >= 5) & (band < 12)].abs().max() < 1e-4
        assert delta[band < 5].abs().max() > 0.1
    assert band_columns(REGISTRY["hash"], 0) is None
    assert band_columns(REGISTRY["mlp"], REGISTRY["mlp"].freq_bands) is None


def test_band_penalty_is_half_the_sum_of_squares():
    spec = REGISTRY["mlp"]
    init = create_init(spec, seed=0).params
    model = TorchBatchedNerfs(spec, [init, init], "cpu")
    cols = band_columns(spec, 20)
    w = np.asarray(init["mlp.0"])[:, cols.numpy()]
    assert float(band_penalty(model, cols).detach()) == pytest.approx(2 * 0.5 * float((w.astype(np.float64) ** 2).sum()), rel=1e-5)


def test_fitting_with_the_penalty_quiets_those_weights_only(car_scene):
    spec = REGISTRY["mlp"]
    init = create_init(spec, seed=0).params
    config = dataclasses.replace(PRESETS["tiny"], steps=40)
    plain = fit_batch(spec, init, [car_scene], config, seed=0)[0]
    quiet = fit_batch(spec, init, [car_scene], dataclasses.replace(config, band_l2=10.0, band_l2_from=5), seed=0)[0]
    cols = band_columns(spec, 5).numpy()
    low = np.setdiff1d(np.arange(spec.freq_dim), cols)
    high_plain = np.abs(plain.params["mlp.0"][:, cols]).mean()
    high_quiet = np.abs(quiet.params["mlp.0"][:, cols]).mean()
    assert high_quiet < 0.2 * high_plain  # driven towards zero from the shared init
    assert np.abs(quiet.params["mlp.0"][:, low]).mean() > 0.5 * np.abs(plain.params["mlp.0"][:, low]).mean()
    assert np.isfinite(quiet.psnr)


@pytest.mark.parametrize("name", ["mlp", "tri-8c"])
def test_the_lower_bands_alone_are_the_same_function_when_the_others_weigh_zero(name):
    from nfkit.nerf import field

    spec = REGISTRY[name]
    g = torch.Generator().manual_seed(0)
    params = {k: torch.stack([v, 0.5 * v]) for k, v in field.init_params(spec, g).items()}
    if "triplane" in params:
        params["triplane"] = 0.1 * torch.randn(params["triplane"].shape, generator=g)
    x = 1.4 * torch.rand(2, 500, 3, generator=g) - 0.7
    full = field.forward(spec, params, x)
    assert not torch.allclose(full[0], field.forward(spec, params, x, bands=5)[0], atol=1e-3)  # those bands matter...
    params["mlp.0"][:, :, band_columns(spec, 5)] = 0.0
    full = field.forward(spec, params, x)
    for a, b in zip(full, field.forward(spec, params, x, bands=5), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)  # ...and with zero weights they do not
    torch.testing.assert_close(field.density(spec, params, x), field.density(spec, params, x, bands=5), rtol=1e-5, atol=1e-5)
    assert full[1].abs().max() > 0
    with pytest.raises(ValueError, match="bands"):
        field.forward(spec, params, x, bands=spec.freq_bands + 1)


def test_band_cut_zeroes_those_weights_and_keeps_them_zero(car_scene):
    spec = REGISTRY["mlp"]
    init = create_init(spec, seed=0).params
    config = dataclasses.replace(PRESETS["tiny"], steps=40, band_l2=1.0, band_l2_from=5)
    quiet = fit_batch(spec, init, [car_scene], config, seed=0)[0]
    cut = fit_batch(spec, init, [car_scene], dataclasses.replace(config, band_cut=0.25), seed=0)[0]
    cols = band_columns(spec, 5).numpy()
    low = np.setdiff1d(np.arange(spec.freq_dim), cols)
    assert np.abs(quiet.params["mlp.0"][:, cols]).max() > 0  # the penalty alone leaves them small, not zero
    assert (cut.params["mlp.0"][:, cols] == 0).all()  # zero from step 10 on: no Adam step moved them again
    assert np.abs(cut.params["mlp.0"][:, low]).mean() > 0.5 * np.abs(quiet.params["mlp.0"][:, low]).mean()
    assert cut.psnr == pytest.approx(quiet.psnr, abs=1.5)  # a tiny fit: the same quality, not the same bits
    # the held-out PSNR the trainer reports (lower bands only) is the stored NeRF's, rendered with all bands
    from nfkit.fit.trainer import evaluate_params

    full = evaluate_params(spec, [cut.params], [car_scene], config)[0]
    assert full == pytest.approx(cut.psnr, abs=0.3)


def test_band_options_are_checked():
    assert resolve_config("cpu", {}).band_l2 > 0  # in the cpu preset
    assert PRESETS["paper"].band_l2 == 0  # the reference recipe has none
    with pytest.raises(ConfigError):
        resolve_config("cpu", {"band_l2": "-1"})
    with pytest.raises(ConfigError):
        resolve_config("cpu", {"band_l2_from": "-2"})
    with pytest.raises(ConfigError):
        resolve_config("cpu", {"band_cut": "1"})
