"""The decoder's occupancy term (``EncoderConfig.occ_weight``): the loss and its points."""

from __future__ import annotations

import math

import torch

from nfkit.encoder.targets import grid_of
from nfkit.encoder.train import _occupancy_points
from nfkit.losses import occupancy_loss
from nfkit.render.rays import DEFAULT_AABB


def test_occupancy_loss_is_the_optical_depth_when_empty_and_minus_log_opacity_when_occupied():
    sigma = torch.tensor([0.01, 1.0, 10.0, 1.0, 10.0], requires_grad=True)
    occupied = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0])
    step = 0.1
    loss = occupancy_loss(sigma, occupied, step)
    want = (0.001 + 0.1 + 1.0 - math.log(1 - math.exp(-0.1)) - math.log(1 - math.exp(-1.0))) / 5
    assert abs(loss.item() - want) < 1e-5
    loss.backward()
    g = sigma.grad
    # empty points: d/dsigma of sigma*step/5 is step/5 whatever the density (a faint fog is pushed
    # down as hard as a dense one); occupied points: pulled up, less once opaque
    assert torch.allclose(g[:3], torch.full((3,), step / 5))
    assert g[3] < 0 and g[4] < 0 and abs(g[4]) < abs(g[3])


def test_occupancy_points_are_half_in_occupied_cells_and_inside_the_box():
    occ = torch.zeros(8, 8, 8, dtype=torch.bool)
    occ[2:4, 5, 1:3] = True  # 4 of 512 cells
    grid = grid_of([occ])
    pts = _occupancy_points(grid, 0, 100, torch.Generator().manual_seed(0))
    assert pts.shape == (100, 3)
    lo, hi = DEFAULT_AABB
    assert bool(((pts >= lo) & (pts < hi)).all())
    inside = grid.lookup(pts[None])[0]
    assert bool(inside[50:].all())  # the second half is drawn from the occupied cells
    assert inside[:50].float().mean() < 0.2  # the uniform half is mostly empty here


def test_pretrain_with_the_occupancy_term_adds_it_to_the_rendering_loss(tiny_workspace, tmp_path):
    from nfkit.encoder.config import resolve_config
    from nfkit.encoder.train import pretrain_encoder

    runs = {}
    for w in (0.0, 1.0):
        cfg = resolve_config("tiny", {"loss": "r", "epochs": 1, "occ_weight": w, "occ_points": 64})
        runs[w] = pretrain_encoder(tiny_workspace / "graphs", tiny_workspace / "nerfs", tmp_path / f"w{w}", cfg, progress=False)
    # the same model, batches and draws until the term: it only adds a positive loss
    assert runs[1.0].history[0]["loss_r"] > runs[0.0].history[0]["loss_r"]
