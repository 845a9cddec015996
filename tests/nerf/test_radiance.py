"""The one radiance-field interface: ParamField, the fitter's batched NeRFs, grids from it."""

from __future__ import annotations

import numpy as np
import torch

from nfkit.fit.trainer import TorchBatchedNerfs
from nfkit.nerf import field as nerf_field
from nfkit.nerf.radiance import ParamField, RadianceField
from nfkit.nerf.specs import get_arch
from nfkit.render.renderer import build_grid, field_fn_for, grid_from_field


def _params(spec, b, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ones = [nerf_field.init_params(spec, gen) for _ in range(b)]
    return {k: torch.stack([p[k] for p in ones]) for k in ones[0]}


def test_param_field_is_the_functional_field_and_a_radiance_field():
    spec = get_arch("tri-16w")
    params = _params(spec, 3)
    f = ParamField(spec, params)
    assert isinstance(f, RadianceField) and f.n_fields == 3
    x = torch.rand(3, 50, 3) * 1.4 - 0.7
    rgb, sigma = f(x)
    ref_rgb, ref_sigma = nerf_field.forward(spec, params, x)
    assert torch.equal(rgb, ref_rgb) and torch.equal(sigma, ref_sigma)
    assert torch.equal(f.density(x), nerf_field.density(spec, params, x))
    torch.testing.assert_close(f.density_one(1, x[1]), ref_sigma[1], rtol=1e-5, atol=1e-6)
    assert isinstance(field_fn_for(spec, params), RadianceField)


def test_trainable_batch_implements_the_interface_and_keeps_gradients():
    spec = get_arch("mlp-2l")
    init = {k: v[0].numpy() for k, v in _params(spec, 1).items()}
    model = TorchBatchedNerfs(spec, [init, init], "cpu")
    assert isinstance(model, RadianceField) and model.n_fields == 2
    x = torch.rand(2, 10, 3) - 0.5
    rgb, sigma = model(x)
    (rgb.sum() + sigma.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert np.array_equal(model.canonical()[1]["mlp.0"], init["mlp.0"])


def test_one_grid_builder_serves_every_field():
    spec = get_arch("hash-3n")
    params = _params(spec, 2, seed=1)
    a = build_grid(spec, params, 8, 0.01, generator=torch.Generator().manual_seed(0))
    b = grid_from_field(ParamField(spec, params), 8, 0.01, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.binary, b.binary) and torch.equal(a.occs, b.occs)
