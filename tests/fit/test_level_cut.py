"""FitConfig.level_cut: the hash grid's finer levels set to zero part-way through a fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nfkit.errors import ConfigError
from nfkit.fit.config import PRESETS, resolve_config
from nfkit.fit.trainer import evaluate_params, fit_batch, level_floats
from nfkit.nerf import field
from nfkit.nerf.encodings import hash_grid_encoding, hash_levels
from nfkit.nerf.init import create_init
from nfkit.nerf.specs import REGISTRY


def test_level_floats_are_the_tail_of_the_table():
    spec = REGISTRY["hash"]
    levels = hash_levels(spec)
    tail = level_floats(spec, 2)
    n = spec.param_shapes()["hash_table"][0]
    assert tail.start == spec.hash_features * sum(lv.size for lv in levels[:2])
    assert len(range(n)[tail]) == spec.hash_features * sum(lv.size for lv in levels[2:])
    assert level_floats(spec, spec.hash_levels) is None
    assert level_floats(REGISTRY["mlp"], 1) is None


def test_the_coarse_levels_alone_are_the_same_function_when_the_others_are_zero():
    spec = REGISTRY["hash"]
    g = torch.Generator().manual_seed(0)
    params = {k: torch.stack([v, 0.5 * v]) for k, v in field.init_params(spec, g).items()}
    params["hash_table"] = 0.5 * torch.randn(params["hash_table"].shape, generator=g)
    x = 1.4 * torch.rand(2, 500, 3, generator=g) - 0.7
    u = field.normalize(x)
    enc = hash_grid_encoding(spec, params["hash_table"], u)
    # the first levels' features are the leading columns of the whole encoding
    torch.testing.assert_close(hash_grid_encoding(spec, params["hash_table"], u, levels=2),
                               enc[..., : 2 * spec.hash_features], rtol=0, atol=0)
    assert not torch.allclose(field.forward(spec, params, x)[0], field.forward(spec, params, x, levels=2)[0], atol=1e-3)
    params["hash_table"][:, level_floats(spec, 2)] = 0.0
    full = field.forward(spec, params, x)
    for a, b in zip(full, field.forward(spec, params, x, levels=2), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(field.density(spec, params, x), field.density(spec, params, x, levels=2),
                               rtol=1e-5, atol=1e-5)
    assert full[1].abs().max() > 0
    with pytest.raises(ValueError, match="levels"):
        hash_grid_encoding(spec, params["hash_table"], u, levels=spec.hash_levels + 1)


def test_level_cut_zeroes_the_fine_levels_and_keeps_them_zero(car_scene):
    spec = REGISTRY["hash"]
    init = create_init(spec, seed=0).params
    config = dataclasses.replace(PRESETS["tiny"], steps=40)
    plain = fit_batch(spec, init, [car_scene], config, seed=0)[0]
    cut = fit_batch(spec, init, [car_scene], dataclasses.replace(config, level_cut=0.25, level_cut_from=2), seed=0)[0]
    tail = level_floats(spec, 2)
    head = slice(0, tail.start)
    assert np.abs(plain.params["hash_table"][tail]).max() > 0
    assert (cut.params["hash_table"][tail] == 0).all()  # zero from step 10 on: no Adam step moved them
    assert not np.array_equal(cut.params["hash_table"][head], init["hash_table"][head])  # the coarse ones fit
    assert cut.psnr == pytest.approx(plain.psnr, abs=1.5)
    # the PSNR the trainer reports (coarse levels only) is the stored NeRF's, every level evaluated
    full = evaluate_params(spec, [cut.params], [car_scene], config)[0]
    assert full == pytest.approx(cut.psnr, abs=0.3)


def test_level_cut_options_are_checked():
    assert PRESETS["paper"].level_cut == 0  # the reference recipe has none
    with pytest.raises(ConfigError):
        resolve_config("cpu", {"level_cut": "1"})
    with pytest.raises(ConfigError):
        resolve_config("cpu", {"level_cut_from": "0"})
