"""The render decoder: a decoder refitted to the frozen encoder's embeddings (nfkit's addition).

Why: the decoder trained with the encoder learns colours along the input NeRF's own rays only
(the rendering loss marches it through that NeRF's occupancy grid), so nothing teaches it where
an object is *not*. Rendered through its own grid, as a generated embedding must be, it shows a
box of fog (measured on the demo data: its density in empty cells is 0.93 of that in occupied
ones). And the trained embeddings vary mostly between architectures (the spread within one
architecture is 2–5 % of the total), so the small differences between objects reach its first
layer as noise.

What: when the encoder's epochs end, ``pretrain-encoder`` fits a second decoder
(:func:`refit_spec`: ``refit_freq`` frequency bands, reading the embedding whitened along the
top ``refit_dims`` principal components of the training embeddings) to the frozen embeddings
of the training NeRFs, by distilling each NeRF's field at points of the box: half uniform, half
jittered in the NeRF's occupied cells. Per point the loss is the binary cross-entropy between
the decoder's one-step opacity ``α = 1 − exp(−σ·step)`` and the NeRF's (its density masked by its
occupancy grid, as its renderer sees it), plus the squared colour error weighted by the NeRF's
opacity (:func:`nfkit.losses.distillation_loss`). The encoder does not change: embeddings,
fingerprints and every stage's artifacts stay valid.

The checkpoint stores it as the ``render_decoder`` module; :func:`nfkit.encoder.embed.load_encoder`
gives it to every stage that decodes (``generate``, ``render --decoder``) in place of the
training decoder, which stays in the checkpoint for ``--resume``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from nfkit.encoder.config import EncoderConfig
from nfkit.encoder.targets import NerfTargets, grid_of, nerf_sine
from nfkit.models.decoder import DecoderSpec, ImplicitDecoder
from nfkit.models.plane_decoder import PlaneDecoder, PlaneDecoderSpec
from nfkit.render.renderer import default_step_size

RENDER_DECODER = "render_decoder"


def refit_spec(config: EncoderConfig) -> DecoderSpec | PlaneDecoderSpec:
    """The render decoder's shape. ``mlp``: the training decoder's width, ``refit_freq`` bands,
    whitened to ``refit_dims`` components. ``planes``: a generator of the training decoder's
    width reading ``refit_dims`` whitened components, planes of ``refit_plane_res``² texels and
    ``refit_plane_channels`` channels, ``refit_freq`` bands for the point MLP."""
    if config.refit_decoder == "planes":
        return PlaneDecoderSpec(config.embed_dim, config.refit_dims, config.decoder_hidden, config.refit_plane_channels,
                                config.refit_plane_res, freq_bands=config.refit_freq)
    return DecoderSpec(config.embed_dim, config.decoder_hidden, config.refit_freq, False, config.refit_dims)


def render_decoder(config: EncoderConfig) -> ImplicitDecoder | PlaneDecoder:
    """An untrained render decoder of ``config``'s kind (``refit_decoder``) and shape."""
    spec = refit_spec(config)
    return PlaneDecoder(spec) if isinstance(spec, PlaneDecoderSpec) else ImplicitDecoder(spec)


@torch.no_grad()
def teacher_pools(records: Sequence, targets: Sequence[NerfTargets], n: int, step: float,
                  generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` points per NeRF (half uniform in the box, half jittered in its occupied cells) with
    the NeRF's one-step opacity and colour there.

    Shapes: -> points (M, n, 3), alpha (M, n), rgb (M, n, 3)
    """
    from nfkit.encoder.train import _occupancy_points
    from nfkit.nerf import field

    pts, alphas, colours = [], [], []
    for rec, tg in zip(records, targets, strict=True):
        grid = grid_of([tg.grid])
        x = _occupancy_points(grid, 0, n, generator)[None]
        params = {k: torch.from_numpy(np.asarray(v, np.float32))[None] for k, v in rec.params.items()}
        rgb, sigma = field.forward(rec.arch, params, x, sin=nerf_sine(rec))
        sigma = sigma * grid.lookup(x).to(sigma.dtype)
        pts.append(x[0])
        alphas.append(-torch.expm1(-sigma[0] * step))
        colours.append(rgb[0])
    return torch.stack(pts), torch.stack(alphas), torch.stack(colours)


def refit_decoder(embeddings: Tensor, records: Sequence, targets: Sequence[NerfTargets], config: EncoderConfig,
                  device: str = "cpu", progress: bool = False) -> tuple[ImplicitDecoder | PlaneDecoder, dict]:
    """Fit the render decoder to frozen ``embeddings`` (M, D) of the NeRFs ``records`` (their
    ``targets`` give the occupancy grids). Deterministic for a config on one device; the caller's
    random state is untouched. -> (decoder in eval mode, summary for the training log)."""
    from tqdm import tqdm

    from nfkit.losses import distillation_loss

    if len(records) != embeddings.shape[0] or len(targets) != len(records):
        raise ValueError(f"{embeddings.shape[0]} embeddings, {len(records)} NeRFs and {len(targets)} targets")
    if len(records) < 2:
        raise ValueError("refitting the decoder needs at least 2 training NeRFs")
    t0 = time.perf_counter()
    step = default_step_size(config.render_samples)  # the rendering loss's march step
    gen = torch.Generator().manual_seed(config.seed + 7)
    pts, alpha_t, rgb_t = teacher_pools(records, targets, config.refit_pool, step, gen)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 7)
        decoder = render_decoder(config)
    codes = embeddings.detach().float().cpu()
    decoder.set_whitening(codes)
    decoder = decoder.to(device).train()
    codes, pts, alpha_t, rgb_t = (t.to(device) for t in (codes, pts, alpha_t, rgb_t))
    opt = torch.optim.AdamW(decoder.parameters(), lr=config.refit_lr, weight_decay=config.weight_decay)
    total, warm = config.refit_steps, max(1, config.refit_steps // 10)
    # linear warm-up over a tenth of the steps, then a cosine decay (a one-cycle schedule that
    # also works for a handful of steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: min(1.0, (t + 1) / warm) * 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total)))
    m, batch, n_pts = len(records), min(config.refit_batch, len(records)), min(config.refit_points, config.refit_pool)
    losses: list[float] = []
    bar = tqdm(range(config.refit_steps), desc="refit decoder", unit="step", disable=not progress, leave=False)
    for _ in bar:
        pick = torch.randperm(m, generator=gen)[:batch].to(device)
        cols = torch.randint(config.refit_pool, (batch, n_pts), generator=gen).to(device)
        x = torch.gather(pts[pick], 1, cols[..., None].expand(-1, -1, 3))
        a = torch.gather(alpha_t[pick], 1, cols)
        c = torch.gather(rgb_t[pick], 1, cols[..., None].expand(-1, -1, 3))
        rgb, sigma = decoder(codes[pick], x)
        loss = distillation_loss(sigma, rgb, a, c, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if len(losses) % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    bar.close()
    decoder.eval()
    for p in decoder.parameters():
        p.requires_grad_(False)
    tenth = max(1, len(losses) // 10)
    head, tail = losses[:tenth], losses[-tenth:]
    summary = {"refit_steps": config.refit_steps, "refit_nerfs": m,
               "refit_loss_first": float(np.mean(head)) if head else float("nan"),
               "refit_loss_last": float(np.mean(tail)) if tail else float("nan"),
               "refit_seconds": round(time.perf_counter() - t0, 1)}
    return decoder.cpu(), summary


@torch.no_grad()
def own_grid_psnr(decoder, embeddings: Tensor, records: Sequence, views: int = 2, resolution: int = 48,
                  n_samples: int = 96, grid_res: int = 48) -> list[float]:
    """PSNR (dB) of each decoded embedding against its NeRF, both rendered through an occupancy
    grid built from their *own* density (as a generated embedding is rendered), on black, from
    ``views`` turntable cameras (elevation 30°, distance 3.4, field of view 0.8 rad)."""
    from nfkit.encoder.reconstruct import decoder_views
    from nfkit.fit.trainer import psnr_from_mse
    from nfkit.generate.render import seeded
    from nfkit.render.rays import turntable_cameras
    from nfkit.render.views import render_views

    c2w = turntable_cameras(views, 30.0, 3.4)
    focal = 0.5 * resolution / math.tan(0.4)
    out = []
    for i, rec in enumerate(records):
        with seeded():
            nerf = render_views(rec.arch, rec.params, c2w, resolution, resolution, focal, n_samples, grid_res, sin=nerf_sine(rec))
        with seeded():
            dec = decoder_views(decoder, embeddings[i].float(), c2w, resolution, focal, n_samples, grid_res)
        mse = float(np.mean((np.clip(nerf, 0, 1) - np.clip(dec, 0, 1)) ** 2))
        out.append(psnr_from_mse(max(mse, 1e-10)))
    return out


def summary_line(summary: dict) -> str:
    """One line of a render-decoder summary (``refit_decoder``'s, with the validation PSNRs)."""
    line = (f"render decoder: {summary['refit_steps']} steps on {summary['refit_nerfs']} training NeRFs in "
            f"{summary['refit_seconds']:.0f} s, loss {summary['refit_loss_first']:.3f} -> {summary['refit_loss_last']:.3f}")
    if "val_own_grid_psnr" in summary:
        line += (f"; validation PSNR through its own grid {summary['val_own_grid_psnr']:.2f} dB "
                 f"(the training decoder: {summary['val_own_grid_psnr_training_decoder']:.2f} dB)")
    return line
