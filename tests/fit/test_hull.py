"""The visual hull (nfkit.fit.hull), the carved occupancy grid, and fitting with the hull.

Masks of a sphere are computed exactly (ray-sphere intersection per pixel centre), so which
cells the hull must keep and which it must drop is known.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from nfkit.data.cameras import camera_rays, look_at, orbit_eyes
from nfkit.data.multiview import load_object, scan_dataset
from nfkit.data.synth import SynthConfig, generate_dataset
from nfkit.errors import ConfigError
from nfkit.fit.config import PRESETS, FamilyTuning, resolve_config
from nfkit.fit.hull import cell_rectangles, hull_pixel_mask, hull_ray_mask, visual_hull
from nfkit.fit.trainer import carve_hulls, fit_batch, make_sampler, scene_from_object
from nfkit.nerf.init import create_init
from nfkit.nerf.specs import REGISTRY
from nfkit.render.occupancy import OccupancyGrid

RADIUS = 0.3
RES = 16
LO, HI = -0.7, 0.7


def sphere_views(n_views: int = 8, size: int = 32):
    az = np.linspace(0, 2 * np.pi, n_views, endpoint=False)
    el = np.deg2rad(np.linspace(10, 50, n_views))
    c2w = torch.from_numpy(look_at(orbit_eyes(az, el, np.full(n_views, 2.0)))).float()
    focal = 0.5 * size / math.tan(0.4)
    origins, dirs = camera_rays(c2w, size, size, focal)
    # distance of the ray's closest approach to the origin
    t = -(origins * dirs).sum(-1)
    closest = (origins + dirs * t[..., None]).norm(dim=-1)
    alpha = (closest < RADIUS).float()
    return alpha, c2w, focal, origins, dirs, closest


def cell_centres(res: int = RES) -> torch.Tensor:
    ticks = LO + (torch.arange(res) + 0.5) * (HI - LO) / res
    return torch.stack(torch.meshgrid(ticks, ticks, ticks, indexing="ij"), dim=-1).reshape(-1, 3)


def test_hull_keeps_the_sphere_and_drops_what_no_mask_can_hold():
    alpha, c2w, focal, *_ = sphere_views()
    hull = visual_hull(alpha, c2w, focal, RES)
    assert hull.shape == (RES**3,) and hull.dtype == torch.bool
    centres = cell_centres()
    dist = centres.norm(dim=-1)
    closest = (centres.abs() - (HI - LO) / RES / 2).clamp_min(0).norm(dim=-1)  # of each cell to the centre
    # every cell that reaches into the sphere by more than about a pixel (0.053 at the cameras'
    # distance): the masks sample pixel centres, so a thinner sliver can fall between them
    assert hull[closest < RADIUS - 0.05].all()
    # the hull of 8 views is larger than the sphere, but far from it almost nothing is kept (a
    # few box corners near the cameras, which some views cannot see, stay: the rule is conservative)
    assert hull[dist > 2.5 * RADIUS].float().mean() < 0.01
    assert 0.02 < hull.float().mean() < 0.3


def test_hull_without_masks_is_the_whole_box():
    alpha, c2w, focal, *_ = sphere_views()
    assert visual_hull(torch.ones_like(alpha), c2w, focal, RES).all()


def test_hull_rays_are_those_that_cross_it():
    alpha, c2w, focal, origins, dirs, closest = sphere_views()
    hull = visual_hull(alpha, c2w, focal, RES)
    keep = hull_ray_mask(origins.reshape(-1, 3), dirs.reshape(-1, 3), hull, RES)
    closest = closest.reshape(-1)
    assert keep[closest < RADIUS].all()  # every pixel of the object
    assert not keep[closest > 0.7 * 3**0.5].any()  # rays that miss the whole box
    assert keep.float().mean() < 0.8


def test_hull_pixels_hold_every_ray_that_crosses_it():
    alpha, c2w, focal, origins, dirs, closest = sphere_views()
    size = alpha.shape[1]
    rects = cell_rectangles(c2w, focal, size, size, RES)
    hull = visual_hull(alpha, c2w, focal, RES, rectangles=rects)
    assert torch.equal(hull, visual_hull(alpha, c2w, focal, RES))
    pixels = hull_pixel_mask(hull, c2w, focal, size, size, RES, rectangles=rects)
    assert pixels.shape == alpha.shape and pixels.dtype == torch.bool
    marched = hull_ray_mask(origins.reshape(-1, 3), dirs.reshape(-1, 3), hull, RES)
    flat = pixels.reshape(-1)
    assert flat[marched].all()  # a superset of the rays the marching test finds crossing the hull
    assert flat[closest.reshape(-1) < RADIUS].all()  # so every pixel of the object
    assert not flat[closest.reshape(-1) > 0.7 * 3**0.5].any()  # and no ray that misses the box
    assert flat.float().mean() < marched.float().mean() + 0.1  # and not much more
    # a hull of one cell: its rectangle, a few pixels, in every view
    one = torch.zeros(RES**3, dtype=torch.bool)
    one[(RES // 2) * RES * RES + (RES // 2) * RES + RES // 2] = True
    few = hull_pixel_mask(one, c2w, focal, size, size, RES)
    assert (few.flatten(1).sum(1) > 0).all() and few.float().mean() < 0.1


def test_carved_grid_never_leaves_its_limit():
    grid = OccupancyGrid(2, 8)
    limit = torch.zeros(2, 8**3, dtype=torch.bool)
    limit[0, :100] = True
    limit[1, 200:260] = True
    grid.carve(limit)
    seen = []

    def everywhere_dense(x):
        seen.append(x.shape[1])
        return torch.ones(x.shape[:2])

    for step in (0, 300):  # a warm-up update, then a regular one
        grid.update(step, everywhere_dense, warmup_steps=256)
        assert not (grid.binary.flatten(1) & ~limit).any()
        assert grid.binary.flatten(1)[limit].all()
    assert seen[0] == 100  # the warm-up evaluates the cells inside the limit only (padded to the longest row)
    with pytest.raises(ValueError, match="bool limit"):
        grid.carve(torch.ones(2, 7, dtype=torch.bool))


def test_carved_update_evaluates_each_nerfs_real_cells_only():
    limit = torch.zeros(3, 8**3, dtype=torch.bool)
    limit[0, :40] = True
    limit[1, 100:400] = True
    limit[2, 500:510] = True

    def per_cell(x):  # the same value anywhere in a cell, so jitter cannot change the result
        lo, hi = OccupancyGrid(1, 8).aabb
        ijk = torch.round((x - lo) / (hi - lo) * 8 - 0.5).clamp(0, 7)  # the nearest cell centre: no edge rounding
        return (ijk[..., 0] * 64 + ijk[..., 1] * 8 + ijk[..., 2]) / 512.0 * 0.02

    calls = []

    def ragged(x, counts):
        calls.append(counts.tolist())
        out = per_cell(x)
        return out.masked_fill(torch.arange(x.shape[1]) >= counts[:, None], float("nan"))  # padding unused

    grids = []
    for use_ragged in (False, True):
        grid = OccupancyGrid(3, 8)
        grid.carve(limit)
        for step in (0, 8, 300):
            grid.update(step, per_cell, warmup_steps=256, generator=torch.Generator().manual_seed(step),
                        occ_eval_ragged=ragged if use_ragged else None, chunk=64)  # several chunks per row
        grids.append(grid)
    assert [sum(c) for c in zip(*calls[:5], strict=True)] == [40, 300, 10]  # the warm-up (5 chunks): each hull's cells, no padding
    assert torch.equal(grids[0].occs, grids[1].occs) and torch.equal(grids[0].binary, grids[1].binary)
    assert not torch.isnan(grids[1].occs).any()


def test_family_tuning_changes_only_its_family():
    config = resolve_config("cpu", {"tri.steps": "33", "mlp.lr": "0.005"})
    assert config.for_family("tri").steps == 33
    assert config.for_family("tri").lr == config.lr
    assert config.for_family("mlp").lr == 0.005
    assert config.for_family("hash").steps == PRESETS["cpu"].hash.steps
    assert dataclasses.replace(config, tri=FamilyTuning()).for_family("tri").steps == config.steps
    assert config.to_dict()["tri"]["steps"] == 33  # recorded in fit_config.json with the rest
    with pytest.raises(ConfigError):
        resolve_config("cpu", {"tri.steps": "-1"})


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("hull") / "data"
    generate_dataset(root, SynthConfig(resolution=32, objects_per_class=1, views=12, classes=("chair",), seed=3))
    return scene_from_object(load_object(scan_dataset(root)[0]), eval_every=4)


def _tiny(**changes):
    return dataclasses.replace(PRESETS["tiny"], **changes)


def test_hull_rays_come_from_the_pixels_that_cross_it(scene):
    config = _tiny(hull=True, hull_rays=True)
    sampler = make_sampler(config, 1, "cpu", torch.Generator().manual_seed(0))
    (carved,) = carve_hulls([scene], sampler, config)
    assert carved.ray_pool is not None
    pool = set(carved.ray_pool.tolist())
    fg = torch.nonzero(scene.train_rgba[:, 3] > 0)[:, 0].tolist()
    assert set(fg) <= pool  # every pixel of the object can be drawn
    assert len(pool) < len(scene.train_rgba)  # and some background pixels cannot
    assert sampler.grid.limit is not None and 0 < sampler.grid.occupied_fraction()[0] < 1


def test_fitting_with_the_hull(scene):
    spec = REGISTRY["hash"]
    init = create_init(spec, seed=0).params
    plain = fit_batch(spec, init, [scene], _tiny(), seed=0)[0]
    hulled = fit_batch(spec, init, [scene], _tiny(hull=True, hull_rays=True, hull_release=0.2), seed=0)[0]
    carved_only = fit_batch(spec, init, [scene], _tiny(hull=True), seed=0)[0]
    for r in (plain, hulled, carved_only):
        assert math.isfinite(r.psnr)
    # the hull spends fewer samples per step for at least the quality of the plain recipe
    assert hulled.samples_per_step < plain.samples_per_step
    assert hulled.psnr > plain.psnr - 1.0, (plain.psnr, hulled.psnr)


def test_hull_options_are_checked(scene):
    spec = REGISTRY["mlp"]
    init = create_init(spec, seed=0).params
    with pytest.raises(ConfigError, match="hull_rays=true needs hull=true"):
        fit_batch(spec, init, [scene], _tiny(hull_rays=True), seed=0)
    with pytest.raises(ConfigError, match="hull_release"):
        resolve_config("cpu", {"hull_release": "1.5"})
    from nfkit.fit.trainer import check_fit_budget

    with pytest.raises(ConfigError, match="needs the torch grid sampler"):  # before anything is loaded
        check_fit_budget(dataclasses.replace(PRESETS["cpu"], sampler="nerfacc"), "cuda")
    check_fit_budget(PRESETS["cpu"], "cpu")


def test_ragged_evaluation_is_the_batched_function_without_the_padding():
    from nfkit.fit.trainer import TorchBatchedNerfs

    spec = REGISTRY["tri"]
    inits = [create_init(spec, seed=s).params for s in (0, 1, 2)]
    model = TorchBatchedNerfs(spec, inits, "cpu")
    x = torch.rand(3, 50, 3, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.6
    counts = torch.tensor([50, 10, 3])  # 42 % filled: each NeRF on its own positions
    rgb, sigma = model.forward_ragged(x, counts)
    ref_rgb, ref_sigma = model(x)
    for b, n in enumerate(counts.tolist()):
        torch.testing.assert_close(rgb[b, :n], ref_rgb[b, :n], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(sigma[b, :n], ref_sigma[b, :n], rtol=1e-4, atol=1e-5)
        assert (rgb[b, n:] == 0).all() and (sigma[b, n:] == 0).all()
    (rgb.sum() + sigma.sum()).backward()
    grads = model.params["triplane"].grad
    assert all(grads[b].abs().sum() > 0 for b in range(3))  # every NeRF gets its gradient
    full_rgb, _ = model.forward_ragged(x, torch.tensor([50, 45, 40]))  # mostly filled: one batched call
    torch.testing.assert_close(full_rgb, ref_rgb)
