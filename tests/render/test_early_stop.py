"""Early stopping of the torch renderer (``render_batch(early_stop_eps=...)``): behind an
opaque surface the field is not evaluated, and the image is the same up to ``early_stop_eps``."""

from __future__ import annotations

import math

import numpy as np
import torch

from nfkit.nerf.radiance import ParamField
from nfkit.nerf.specs import get_arch
from nfkit.render.renderer import _group_bounds, render_batch
from tests.analytic import SPEC, cube_params


def _cubes(sigmas) -> dict[str, torch.Tensor]:
    """Analytic cubes (constant colour and density in the box), one per density."""
    out = []
    for sigma in sigmas:
        p = cube_params()
        p["mlp.1"] = p["mlp.1"].copy()
        p["mlp.1"][3, 0] = math.log(sigma) + 1.0
        out.append(p)
    return {k: torch.tensor(np.stack([p[k] for p in out])) for k in out[0]}


def _rays(b: int, r: int = 64):
    gen = torch.Generator().manual_seed(0)
    xy = (torch.rand(b, r, 2, generator=gen) - 0.5) * 1.0
    origins = torch.cat([xy, torch.full((b, r, 1), 2.0)], dim=-1)
    dirs = torch.tensor([0.0, 0.0, -1.0]).expand(b, r, 3).contiguous()
    return origins, dirs


def test_opaque_rays_stop_and_render_the_same():
    params = _cubes([200.0, 0.3])  # one opaque cube, one nearly transparent
    origins, dirs = _rays(2)
    full = render_batch(ParamField(SPEC, params), origins, dirs, 96)
    early = render_batch(ParamField(SPEC, params), origins, dirs, 96, early_stop_eps=1e-4)
    assert torch.allclose(early.rgb, full.rgb, atol=2e-4)
    assert torch.allclose(early.opacity, full.opacity, atol=2e-4)
    # the opaque cube stops after the first group of samples; the transparent one never does
    assert int(early.n_evaluated[0]) < 0.3 * int(full.n_evaluated[0])
    assert int(early.n_evaluated[1]) == int(full.n_evaluated[1])


def test_gradients_match_the_full_render():
    params = _cubes([200.0, 0.3])
    origins, dirs = _rays(2, 32)
    grads = []
    for eps in (0.0, 1e-4):
        leaf = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        out = render_batch(ParamField(SPEC, leaf), origins, dirs, 96, early_stop_eps=eps)
        out.rgb.sum().backward()
        grads.append({k: v.grad for k, v in leaf.items()})
    for k in params:
        assert torch.allclose(grads[0][k], grads[1][k], rtol=1e-3, atol=1e-4), k


def test_nerfs_without_samples_in_a_group():
    """A hash NeRF whose rays all miss the box while another's do not (a group is empty for it)."""
    from nfkit.nerf.init import create_init

    spec = get_arch("hash")
    init = create_init(spec, seed=0).params
    params = {k: torch.tensor(np.stack([v, v])) for k, v in init.items()}
    origins, dirs = _rays(2, 16)
    origins[1, :, 0] += 5.0  # NeRF 1: every ray misses the box
    out = render_batch(ParamField(spec, params), origins, dirs, 32, early_stop_eps=1e-4)
    assert int(out.n_evaluated[1]) == 0 and int(out.n_evaluated[0]) > 0
    assert torch.all(out.opacity[1] == 0)


def test_groups_cover_every_rank_once():
    for n in (1, 7, 8, 33, 128, 129, 1000):
        bounds = _group_bounds(n)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(bounds, bounds[1:], strict=False))
