"""The naive way to fit a NeRF, for ``nfkit.bench.fit``'s side-by-side comparison.

A plain torch loop with what every NeRF tutorial starts from: one NeRF at a time, random rays
from every pixel, ``samples`` uniform stratified samples per ray across the box, no occupancy
grid and no visual hull, the whole ray through the field, alpha compositing on a random
background, smooth-L1, Adam at the recipe's learning rates (the same parameter groups as
nfkit's fitter, so only the sampling and batching differ). It runs until its test PSNR
reaches a target (nfkit's for the same object) or a time budget is spent; the PSNR checks
are not timed.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from nfkit.render.rays import ray_aabb_intersect


def render_uniform(field, origins: Tensor, dirs: Tensor, n_samples: int, background: Tensor,
                   generator: torch.Generator | None = None) -> Tensor:
    """(R, 3) colours of rays (R, 3) with ``n_samples`` samples each, every one evaluated."""
    t_near, t_far, _ = ray_aabb_intersect(origins, dirs)
    delta = (t_far - t_near) / n_samples
    shift = torch.rand(len(origins), 1, generator=generator) if generator is not None else torch.full((len(origins), 1), 0.5)
    t = t_near[:, None] + (torch.arange(n_samples) + shift) * delta[:, None]
    x = origins[:, None, :] + dirs[:, None, :] * t[..., None]
    rgb, sigma = field(x.reshape(1, -1, 3))
    rgb, sigma = rgb.reshape(len(origins), n_samples, 3), sigma.reshape(len(origins), n_samples)
    alpha = 1.0 - torch.exp(-sigma * delta[:, None])
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1] + 1e-10], dim=1), dim=1)
    weights = alpha * trans
    return (weights[..., None] * rgb).sum(dim=1) + (1.0 - weights.sum(dim=1, keepdim=True)) * background


@torch.no_grad()
def test_psnr(field, scene, n_samples: int, chunk: int = 8192) -> float:
    """PSNR of the scene's held-out pixels, rendered on black the naive way."""
    err = 0.0
    for start in range(0, len(scene.eval_rgba), chunk):
        c = scene.eval_rgba[start : start + chunk]
        rgb = render_uniform(field, scene.eval_origins[start : start + chunk], scene.eval_dirs[start : start + chunk],
                             n_samples, torch.zeros(3))
        err += float(((rgb.clamp(0, 1) - c[:, :3] * c[:, 3:]) ** 2).mean(dim=-1).sum())
    mse = err / max(len(scene.eval_rgba), 1)
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


def naive_fit(spec, init, scene, config, target_psnr: float, max_seconds: float, check_every: int = 20,
              seed: int = 0) -> dict:
    """Fit one NeRF the naive way until ``target_psnr`` or ``max_seconds`` of fitting."""
    from nfkit.fit.trainer import TorchBatchedNerfs, _param_groups

    field = TorchBatchedNerfs(spec, [init], "cpu")
    opt = torch.optim.Adam(_param_groups(field, config), lr=config.lr, eps=config.adam_eps)
    gen = torch.Generator().manual_seed(seed)
    seconds, step, curve, psnr = 0.0, 0, [], -math.inf
    while True:
        t0 = time.perf_counter()
        for _ in range(check_every):
            idx = torch.randint(len(scene.train_rgba), (config.rays,), generator=gen)
            c = scene.train_rgba[idx]
            bg = torch.rand(3, generator=gen)
            target = c[:, :3] * c[:, 3:] + bg * (1.0 - c[:, 3:])
            rgb = render_uniform(field, scene.train_origins[idx], scene.train_dirs[idx], config.samples, bg, gen)
            loss = F.smooth_l1_loss(rgb, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        seconds += time.perf_counter() - t0
        psnr = test_psnr(field, scene, config.samples)
        curve.append([step, seconds, psnr])
        if psnr >= target_psnr or seconds >= max_seconds:
            break
    reached = psnr >= target_psnr
    # interpolated on the unrounded checks: a PSNR just past the target can round below it
    to_target = crossing_time(curve, target_psnr) if reached else seconds
    return {"steps": step, "seconds": seconds, "psnr": psnr, "reached": reached,
            "curve": [[n, round(t, 2), round(q, 2)] for n, t, q in curve], "seconds_to_target": to_target}


def crossing_time(curve: list, target_psnr: float) -> float:
    """When the PSNR curve ``[[step, seconds, psnr], ...]`` first reaches ``target_psnr``,
    interpolated linearly between the two checks around it (the checks come every
    ``check_every`` steps, so the first check past the target overstates the time by up to that
    many steps). The PSNR rises ever more slowly, so the chord still reaches the target no
    sooner than the curve does: an upper bound, closer than the check's time."""
    prev_s, prev_p = 0.0, -math.inf
    for _, s, p in curve:
        if p >= target_psnr:
            if not math.isfinite(prev_p) or p <= prev_p:
                return float(s)
            return float(prev_s + (target_psnr - prev_p) / (p - prev_p) * (s - prev_s))
        prev_s, prev_p = s, p
    raise ValueError(f"the curve never reaches {target_psnr:.2f} dB")
