"""The batched functional field: shapes, ranges, batching, activations, init distributions."""

from __future__ import annotations

import math

import pytest
import torch

from nfkit.nerf import field
from nfkit.nerf.encodings import frequency_encoding, hash_grid_encoding
from nfkit.nerf.specs import REGISTRY, get_arch
from tests.precision import (
    assert_float32_agree,
    assert_float32_close,
    assert_float64_close,
    rounding_steps,
)


def _params(spec, seeds, noise=0.0, dtype=torch.float32):
    out = []
    for s in seeds:
        p = field.init_params(spec, torch.Generator().manual_seed(s))
        if noise:
            g = torch.Generator().manual_seed(100 + s)
            p = {k: v + noise * torch.randn(v.shape, generator=g) for k, v in p.items()}
        out.append(p)
    return {k: torch.stack([p[k] for p in out]).to(dtype) for k in out[0]}


def _positions(b, n, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, n, 3, generator=g) * 1.3 - 0.65).to(dtype)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_forward_shapes_and_ranges_all_archs(name):
    spec = get_arch(name)
    params = _params(spec, [0, 1], noise=0.05)
    x = _positions(2, 33)
    rgb, sigma = field.forward(spec, params, x)
    assert rgb.shape == (2, 33, 3) and sigma.shape == (2, 33)
    assert rgb.dtype == torch.float32 and torch.isfinite(rgb).all() and torch.isfinite(sigma).all()
    assert (rgb > 0).all() and (rgb < 1).all() and (sigma >= 0).all()
    assert_float32_agree(field.density(spec, params, x), sigma, rounding_steps(spec, 1), "density")


@pytest.mark.parametrize("name", ["mlp", "tri", "hash", "tri-8c", "hash-11t"])
def test_batched_forward_equals_per_nerf_forward(name):
    spec = get_arch(name)
    # float64: batching must not mix NeRFs, which shows far above float64 rounding, whereas in
    # float32 a batched and a single bmm may use different kernels (and round differently)
    params = _params(spec, [3, 4, 5], noise=0.1, dtype=torch.float64)
    x = _positions(3, 40, seed=1, dtype=torch.float64)
    rgb, sigma = field.forward(spec, params, x)
    steps = rounding_steps(spec, 40)
    for b in range(3):
        one = {k: v[b : b + 1] for k, v in params.items()}
        rgb1, sigma1 = field.forward(spec, one, x[b : b + 1])
        assert_float64_close(rgb[b], rgb1[0], steps, "rgb")
        assert_float64_close(sigma[b], sigma1[0], steps, "sigma")


def _explicit_forward(spec, p, x):
    """One NeRF, written out layer by layer from the module docstring (no batching tricks):
    the MLP input is [encoding ‖ ones], materialised, as tiny-cuda-nn pads it.

    The encoding is evaluated in ``x``'s dtype, the MLP in the parameters' dtype: with float32
    positions and float64 parameters this is the float64 reference of the float32 field (the
    frequency encoding's top bands, sin(2^23·π·u), depend on how ``u`` was rounded, so the
    reference must see the same float32 ``u``; everything after the encoding is float64)."""
    lo, hi = field.AABB
    dtype = p["mlp.0"].dtype
    u = (x - lo) / (hi - lo)
    if spec.family == "mlp":
        h = frequency_encoding(u, spec.freq_bands).to(dtype)
    elif spec.family == "hash":
        h = hash_grid_encoding(spec, p["hash_table"][None], u[None])[0]
    else:
        g = (2 * u - 1).to(dtype)
        feats = 0
        for plane, (a0, a1) in enumerate(((0, 1), (0, 2), (1, 2))):
            grid = torch.stack([g[:, a0], g[:, a1]], -1).view(1, 1, -1, 2)
            feats = feats + torch.nn.functional.grid_sample(p["triplane"][plane][None], grid, align_corners=True)[0, :, 0].T
        h = torch.cat([feats, frequency_encoding(u, spec.freq_bands).to(dtype)], -1)
    assert h.shape[-1] == spec.encoding_dim and h.dtype == dtype
    h = torch.cat([h, torch.ones(len(x), spec.mlp_input_dim - spec.encoding_dim, dtype=dtype)], -1)
    act = torch.relu if spec.activation == "relu" else torch.sin
    for i in range(spec.hidden_layers):
        h = act(h @ p[f"mlp.{i}"].T)
    out = h @ p[f"mlp.{spec.hidden_layers}"].T
    inside = ((u > 0) & (u < 1)).all(-1)
    return torch.sigmoid(out[:, :3]), torch.exp(out[:, 3] - 1) * inside


@pytest.mark.parametrize("name", ["mlp", "tri", "hash", "mlp-2l", "tri-16w", "tri-8c", "hash-32h", "hash-3n"])
def test_forward_matches_explicit_layer_by_layer_computation(name):
    spec = get_arch(name)
    steps = rounding_steps(spec, 1)
    # the formula, in float64 on both sides
    params = _params(spec, [7], noise=0.2, dtype=torch.float64)
    x = _positions(1, 25, seed=2, dtype=torch.float64)
    rgb, sigma = field.forward(spec, params, x)
    rgb_e, sigma_e = _explicit_forward(spec, {k: v[0] for k, v in params.items()}, x[0])
    assert_float64_close(rgb[0], rgb_e, steps, "rgb")
    assert_float64_close(sigma[0], sigma_e, steps, "sigma")
    # the float32 field: within float32 rounding of its float64 reference
    x32 = x.float()
    rgb, sigma = field.forward(spec, {k: v.float() for k, v in params.items()}, x32)
    rgb_e, sigma_e = _explicit_forward(spec, {k: v[0] for k, v in params.items()}, x32[0])
    assert_float32_close(rgb[0], rgb_e, steps, "rgb")
    assert_float32_close(sigma[0], sigma_e, steps, "sigma")


def test_density_is_zero_outside_the_box_and_gradients_reach_every_parameter():
    spec = get_arch("tri")
    params = {k: v.requires_grad_() for k, v in _params(spec, [0, 1], noise=0.05).items()}
    x = _positions(2, 200)
    x[:, :5] = torch.tensor([0.71, 0.0, 0.0])
    rgb, sigma = field.forward(spec, params, x)
    assert (sigma[:, :5] == 0).all() and (sigma[:, 5:] > 0).all()
    (rgb.sum() + sigma.sum()).backward()
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_trunc_exp_clamps_the_gradient_only():
    x = torch.tensor([0.0, 3.0, 20.0], dtype=torch.float64, requires_grad=True)
    y = field.trunc_exp(x)
    torch.testing.assert_close(y, torch.exp(x.detach()))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.exp(torch.tensor([0.0, 3.0, 15.0], dtype=torch.float64)))


def test_bad_inputs_are_refused_with_a_clear_message():
    spec = get_arch("mlp")
    params = _params(spec, [0])
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        field.forward(spec, params, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="mlp.0"):
        field.forward(spec, {**params, "mlp.0": params["mlp.0"][:, :, :10]}, torch.zeros(1, 5, 3))


def test_init_follows_tcnn_distributions_and_is_deterministic():
    mlp, tri, hsh = get_arch("mlp"), get_arch("tri"), get_arch("hash")
    # padded fans: mlp 144->64 (Xavier over 144+64), last layer 64->16; hash input padded 8->16
    assert field.mlp_init_bounds(mlp) == pytest.approx([math.sqrt(6 / 208), math.sqrt(6 / 128), math.sqrt(6 / 128), math.sqrt(6 / 80)])
    assert field.mlp_init_bounds(hsh)[0] == pytest.approx(math.sqrt(6 / 80))
    assert field.mlp_init_bounds(tri) == pytest.approx([30 / 304] + [math.sqrt(6 / 64)] * 3)
    assert field.mlp_init_bounds(get_arch("tri-8c"))[0] == pytest.approx(30 / 304)  # 296 padded to 304
    # tcnn initialises every entry of its padded first layer: nfkit stores and draws them all
    w0 = field.init_params(hsh, torch.Generator().manual_seed(0))["mlp.0"]
    assert w0.shape == (64, 16)
    assert (w0[:, 8:].abs() > 0).all() and w0[:, 8:].abs().max() <= math.sqrt(6 / 80)
    assert w0[:, 8:].abs().max() > 0.8 * math.sqrt(6 / 80)
    p = field.init_params(tri, torch.Generator().manual_seed(0))
    assert list(p) == list(tri.param_shapes())
    assert all(tuple(v.shape) == s and v.dtype == torch.float32 for v, s in zip(p.values(), tri.param_shapes().values(), strict=True))
    for i, b in enumerate(field.mlp_init_bounds(tri)):
        w = p[f"mlp.{i}"]
        assert w.abs().max() <= b and w.abs().max() > 0.9 * b
    assert p["triplane"].std().item() == pytest.approx(1e-3, rel=0.05)
    h = field.init_params(hsh, torch.Generator().manual_seed(0))["hash_table"]
    assert h.abs().max() <= 1e-4 and h.abs().max() > 0.99e-4
    again = field.init_params(tri, torch.Generator().manual_seed(0))
    assert all(torch.equal(p[k], again[k]) for k in p)
    other = field.init_params(tri, torch.Generator().manual_seed(1))
    assert not torch.equal(p["mlp.0"], other["mlp.0"])


@pytest.mark.parametrize("name", ["mlp", "tri", "hash", "tri-8c", "hash-3n"])
def test_gradients_match_the_explicit_computation(name):
    spec = get_arch(name)
    base = _params(spec, [2], noise=0.2, dtype=torch.float64)
    x = _positions(1, 30, seed=4, dtype=torch.float64)
    steps = rounding_steps(spec, 30)

    def grads(params, positions, explicit):
        p = {k: (v[0] if explicit else v).clone().requires_grad_() for k, v in params.items()}
        rgb, sigma = (_explicit_forward(spec, p, positions[0]) if explicit else field.forward(spec, p, positions))
        (rgb.square().sum() + sigma.sum()).backward()
        return {k: v.grad if explicit else v.grad[0] for k, v in p.items()}

    # the formula, in float64 on both sides
    got, want = grads(base, x, False), grads(base, x, True)
    for k in base:
        assert_float64_close(got[k], want[k], steps, k)
    # float32 gradients within float32 rounding of their float64 reference (not of another
    # float32 computation, whose rounding depends on the BLAS kernel the CPU picks)
    x32 = x.float()
    got = grads({k: v.float() for k, v in base.items()}, x32, False)
    want = grads(base, x32, True)
    for k in base:
        assert_float32_close(got[k], want[k], steps, k)
    pad = got["mlp.0"][:, spec.encoding_dim :]
    assert pad.shape[-1] == spec.n_input_padding
    if spec.n_input_padding:  # the padding weights are trained (a bias), all with the same gradient
        assert pad.abs().sum() > 0
        torch.testing.assert_close(pad, pad[:, :1].expand_as(pad))


@pytest.mark.parametrize("name", ["hash", "hash-3n", "tri-8c"])
def test_padding_columns_act_as_the_first_layer_bias(name):
    spec = get_arch(name)
    assert spec.mlp_shapes()[0] == (spec.hidden_dim, spec.mlp_input_dim)
    assert spec.mlp_input_dim % 16 == 0 and spec.n_input_padding > 0
    params = _params(spec, [1], noise=0.1, dtype=torch.float64)
    enc = spec.encoding_dim
    x = _positions(1, 64, seed=6, dtype=torch.float64)
    rgb, sigma = field.forward(spec, params, x)
    # only the sum over the padding columns matters: move weight between them, same function
    # (float64: the moved sum rounds differently, by far less than a real change would show)
    moved = {k: v.clone() for k, v in params.items()}
    w = moved["mlp.0"]
    w[..., enc] += 0.7
    w[..., enc + 1] -= 0.7
    rgb_m, sigma_m = field.forward(spec, moved, x)
    assert_float64_close(rgb_m, rgb, rounding_steps(spec, 64), "rgb")
    assert_float64_close(sigma_m, sigma, rounding_steps(spec, 64), "sigma")
    # ... and it is a bias: shifting it shifts the first layer's pre-activations
    shifted = {k: v.clone() for k, v in params.items()}
    shifted["mlp.0"][..., -1] += 0.5
    assert not torch.allclose(field.density(spec, shifted, x), sigma, atol=1e-4)


def test_tcnn_sine_option_changes_only_the_high_frequencies():
    spec = get_arch("tri")
    params = _params(spec, [0], noise=0.05)
    params["mlp.0"][:, :, spec.tri_channels + 20 :] = 0.0  # ignore log2-frequencies >= 10 of x
    x = _positions(1, 50, seed=5)
    exact = field.forward(spec, params, x)
    fast = field.forward(spec, params, x, sin="tcnn")
    # only x's first 10 frequencies carry weight: the two sines agree there (float32 rounding)
    for a, b in zip(exact, fast, strict=True):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=0)
    params["mlp.0"][:, :, -10:] = 0.3  # z's top frequencies: noise for sin, 0 for tcnn's __sinf
    assert not torch.allclose(field.density(spec, params, x), field.density(spec, params, x, sin="tcnn"), atol=1e-3)
