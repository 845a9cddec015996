"""The torch sampler, occupancy grid and compositing (nfkit.render)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nfkit.render import volrend
from nfkit.render.occupancy import OccupancyGrid, gather_occupied, scatter_samples, take
from nfkit.render.rays import ray_aabb_intersect, stratified_intervals, turntable_cameras
from nfkit.render.renderer import render_batch


def _numpy_composite(t0, t1, sigma, rgb, bg):
    """Direct loop over samples: w_i = T_i (1 - exp(-σ_i δ_i))."""
    n_rays, n_samples = sigma.shape
    out = np.zeros((n_rays, 3))
    acc = np.zeros(n_rays)
    for r in range(n_rays):
        trans = 1.0
        for s in range(n_samples):
            alpha = 1.0 - np.exp(-sigma[r, s] * (t1[r, s] - t0[r, s]))
            w = trans * alpha
            out[r] += w * rgb[r, s]
            acc[r] += w
            trans *= 1.0 - alpha
    return out + (1.0 - acc)[:, None] * bg, acc


@pytest.mark.parametrize("use_nerfacc", [True, False])
def test_composite_matches_numpy(use_nerfacc):
    if use_nerfacc and not volrend.HAVE_NERFACC:
        pytest.skip("nerfacc is not importable")
    rng = np.random.default_rng(0)
    edges = np.sort(rng.uniform(0.5, 3.0, size=(7, 13)), axis=1)
    t0, t1 = edges[:, :-1], edges[:, 1:]
    sigma = rng.exponential(2.0, size=t0.shape)
    sigma[0] = 0.0  # an empty ray
    rgb = rng.uniform(size=(*t0.shape, 3))
    bg = np.array([0.2, 0.5, 0.9])
    want_rgb, want_acc = _numpy_composite(t0, t1, sigma, rgb, bg)
    f = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    got_rgb, got_acc, _ = volrend.composite(f(t0), f(t1), f(sigma), f(rgb), f(bg), use_nerfacc=use_nerfacc)
    np.testing.assert_allclose(got_rgb.numpy(), want_rgb, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_acc.numpy(), want_acc, rtol=1e-10, atol=1e-12)
    assert got_acc[0] == 0 and np.allclose(got_rgb[0].numpy(), bg)


def test_ray_box_intersection():
    o = torch.tensor([[0.0, 0.0, 3.0], [0.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    t_near, t_far, hit = ray_aabb_intersect(o, d, (-0.7, 0.7))
    assert hit.tolist() == [True, False, True]
    np.testing.assert_allclose(t_near.numpy(), [2.3, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(t_far.numpy(), [3.7, 0.0, 0.7], atol=1e-6)
    t0, t1 = stratified_intervals(t_near, t_far, 8, stratified=True, generator=torch.Generator().manual_seed(0))
    mids = 0.5 * (t0 + t1)
    assert torch.all(mids[0] > 2.3) and torch.all(mids[0] < 3.7)
    np.testing.assert_allclose((t1 - t0)[0].numpy(), 1.4 / 8, atol=1e-6)


def test_gather_scatter_roundtrip():
    mask = torch.tensor([[True, False, True, False], [False, False, False, True]])
    index, valid = gather_occupied(mask)
    assert index.shape == (2, 2)
    assert valid.tolist() == [[True, True], [True, False]]
    assert index[0].tolist() == [0, 2] and index[1, 0].item() == 3
    values = torch.arange(8.0).reshape(2, 4, 1) + 1
    dense = scatter_samples(take(values, index), index, valid, 4)
    np.testing.assert_array_equal(dense[..., 0].numpy(), np.where(mask.numpy(), values[..., 0].numpy(), 0))


def _cube_grid(res: int = 8) -> OccupancyGrid:
    """Only the cells of the box's +x half with |y|, |z| in the two central slabs are occupied."""
    grid = OccupancyGrid(1, res)
    grid.binary[:] = False
    grid.binary[0, res // 2 :, res // 2 - 1 : res // 2 + 1, res // 2 - 1 : res // 2 + 1] = True
    return grid


def test_sampler_evaluates_only_occupied_samples():
    grid = _cube_grid()
    seen = []

    def field_fn(x):
        seen.append(x.detach().clone())
        return torch.full((*x.shape[:2], 3), 0.5), torch.full(x.shape[:2], 5.0)

    c2w = turntable_cameras(4, 20.0, 3.0)
    from nfkit.data.cameras import camera_rays

    o, d = camera_rays(c2w, 16, 16, 20.0)
    o, d = o.reshape(1, -1, 3), d.reshape(1, -1, 3)
    out = render_batch(field_fn, o, d, 32, grid, None)
    pts = seen[0]
    assert pts.shape[1] == int(out.n_evaluated[0]) > 0
    assert grid.lookup(pts).all(), "the field was evaluated outside occupied cells"
    assert out.n_evaluated[0] < 0.2 * out.n_samples_total
    # the rays with an occupied sample are exactly the rays that pick up density
    t_near, t_far, hit = ray_aabb_intersect(o, d)
    t0, t1 = stratified_intervals(t_near, t_far, 32, stratified=False)
    mids = 0.5 * (t0 + t1)
    samples = (o[:, :, None] + d[:, :, None] * mids[..., None]).reshape(1, -1, 3)
    expected = (grid.lookup(samples).reshape(1, -1, 32) & hit[..., None]).any(dim=-1)
    assert torch.equal(out.opacity > 0, expected)
    assert expected.any() and (~expected & hit).any()
    full = render_batch(field_fn, o, d, 32, None, None)
    assert full.n_evaluated[0] == int(hit.sum()) * 32


def test_grid_update_follows_nerfacc_rule():
    """During warm-up every cell is evaluated, so the rule can be compared with nerfacc's own
    (pure torch) OccGridEstimator update on a density that is constant per cell."""
    nerfacc = pytest.importorskip("nerfacc")
    res = 8
    rng = np.random.default_rng(0)
    cell_values = [torch.tensor(rng.exponential(0.02, size=(res, res, res)), dtype=torch.float32) for _ in range(3)]

    def occ_fn_for(values):
        def fn(x):  # (..., 3) world -> value of the containing cell
            ijk = ((x + 0.7) / 1.4 * res).long().clamp(0, res - 1)
            return values[ijk[..., 0], ijk[..., 1], ijk[..., 2]]

        return fn

    ours = OccupancyGrid(1, res)
    ref = nerfacc.OccGridEstimator(roi_aabb=[-0.7, -0.7, -0.7, 0.7, 0.7, 0.7], resolution=res)
    ref.train()
    for step, values in enumerate(cell_values):
        fn = occ_fn_for(values)
        ours.update(step, lambda x, fn=fn: fn(x), warmup_steps=256)
        ref._update(step=step, occ_eval_fn=lambda x, fn=fn: fn(x)[:, None], warmup_steps=256)
        np.testing.assert_allclose(ours.occs[0].numpy(), ref.occs.numpy(), rtol=1e-6)
        np.testing.assert_array_equal(ours.binary[0].numpy(), ref.binaries[0].numpy())
    assert 0 < ours.occupied_fraction().item() < 1


def test_grid_update_after_warmup_keeps_occupied_cells():
    grid = OccupancyGrid(2, 8)
    inside = lambda x: ((x[..., 0] > 0) & (x[..., 1].abs() < 0.35)).float()  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    for step in range(0, 64, 16):
        grid.update(step, lambda x: inside(x) * 0.5, warmup_steps=16, generator=gen)
    want = torch.zeros(8, 8, 8, dtype=torch.bool)
    want[4:, 2:6, :] = True
    assert torch.equal(grid.binary[0], want) and torch.equal(grid.binary[1], want)
