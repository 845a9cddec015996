"""Fitting B NeRFs of one architecture at once, from one shared initialization.

The B NeRFs are one batched model (every parameter has a leading NeRF dimension; the MLPs
run as ``bmm``). The loss is the *sum* of the per-NeRF losses and Adam works elementwise, so
each NeRF follows exactly the gradient it would get alone: batching changes the speed, not
the result (up to the random draws).

Per step and NeRF (the reference recipe, SPEC §3): update the occupancy grid (nerfacc's
schedule), draw ``rays`` random pixels of its training views, composite the targets on a
random background colour (``rgb·a + bg·(1−a)``), render with empty-space skipping, and take
smooth-L1 on the alive rays (rays with at least one sample in an occupied cell). Evaluation
renders the held-out views on black.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nfkit.errors import ConfigError
from nfkit.fit.config import FitConfig
from nfkit.nerf.encodings import hash_levels
from nfkit.nerf.radiance import ParamField
from nfkit.render.renderer import grid_from_field
from nfkit.render.samplers import GridSampler, NerfaccSampler, nerfacc_cuda_available

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- scenes
@dataclass
class Scene:
    """The rays of one object, split into training and held-out pixels.

    Shapes: train_origins/train_dirs (P, 3), train_rgba (P, 4); eval_* likewise (Q, ...);
    eval_views: indices of the held-out views (of the training views, or of the test views
    when ``eval_on == "test-views"``); eval_on: a key of ``nfkit.nerf.store.PSNR_ON``.
    """

    key: str
    train_origins: Tensor
    train_dirs: Tensor
    train_rgba: Tensor
    eval_origins: Tensor
    eval_dirs: Tensor
    eval_rgba: Tensor
    eval_views: list[int]
    height: int
    width: int
    eval_on: str = ""
    train_alpha: Tensor | None = None
    """(V, H, W) alpha of the training views, for the visual hull (``FitConfig.hull``)."""
    train_c2w: Tensor | None = None
    """(V, 4, 4) their cameras."""
    focal: float = 0.0
    ray_pool: Tensor | None = None
    """Indices of the training pixels rays are drawn from (None: all); set by the fitter."""


def split_views(n_views: int, eval_every: int) -> tuple[list[int], list[int]]:
    """(training views, held-out views): views 0, N, 2N, ... are held out."""
    held = [v for v in range(n_views) if eval_every and v % eval_every == 0]
    train = [v for v in range(n_views) if v not in set(held)]
    if not train:
        raise ConfigError(
            f"no training views left: {n_views} view(s) with every {eval_every}-th held out "
            "(use a larger --eval-every, or 0 for no evaluation)"
        )
    return train, held


def _flat_rays(obj, views: list[int], device) -> tuple[Tensor, Tensor, Tensor]:
    """(P, 3) origins and directions and (P, 4) RGBA of the pixels of ``views`` of ``obj``."""
    from nfkit.data.cameras import camera_rays

    if not views:
        return torch.zeros(0, 3, device=device), torch.zeros(0, 3, device=device), torch.zeros(0, 4, device=device)
    idx = np.asarray(views)
    images = torch.as_tensor(np.asarray(obj.images[idx], dtype=np.float32))
    c2w = torch.as_tensor(np.asarray(obj.c2w[idx], dtype=np.float32))
    origins, dirs = camera_rays(c2w, images.shape[1], images.shape[2], float(obj.focal))
    return (
        origins.reshape(-1, 3).contiguous().to(device),
        dirs.reshape(-1, 3).contiguous().to(device),
        images.reshape(-1, 4).contiguous().to(device),
    )


def scene_from_object(obj, eval_every: int, device: str | torch.device = "cpu", test=None) -> Scene:
    """Rays and RGBA targets of a :class:`~nfkit.data.multiview.MultiViewObject`.

    Held-out PSNR views: with ``test`` (the object's ``transforms_test.json`` views, the
    NeRF-synthetic convention) every training view is trained on and the PSNR is measured on
    ``test``; otherwise training views 0, N, 2N, ... (N = ``eval_every``) are held back.
    ``eval_every == 0``: no evaluation either way.
    """
    n_views, height, width = obj.images.shape[:3]
    if test is not None and eval_every:
        train, held, eval_on = list(range(n_views)), list(range(len(test.images))), "test-views"
        eval_obj = test
    else:
        train, held = split_views(n_views, eval_every)
        eval_on, eval_obj = ("held-out-train-views" if held else ""), obj
    to, td, tr = _flat_rays(obj, train, device)
    eo, ed, er = _flat_rays(eval_obj, held, device)
    idx = np.asarray(train)
    return Scene(
        f"{obj.class_name}/{obj.object_id}", to, td, tr, eo, ed, er, held, height, width, eval_on,
        train_alpha=torch.as_tensor(np.asarray(obj.images[idx, ..., 3], dtype=np.float32)),
        train_c2w=torch.as_tensor(np.asarray(obj.c2w[idx], dtype=np.float32)),
        focal=float(obj.focal),
    )


# ---------------------------------------------------------------------- models
class TorchBatchedNerfs(ParamField):
    """B trainable NeRFs: leaf tensors with a leading NeRF dimension; nfkit's torch field (a
    :class:`~nfkit.nerf.radiance.RadianceField`), its frequency encoding evaluated with ``sin``
    (``exact`` for nfkit fits; ``tcnn`` for NeRFs imported from tiny-cuda-nn, see
    ``NerfRecord.sin``)."""

    def __init__(
        self, spec, params: Sequence[Mapping[str, np.ndarray]], device: str | torch.device, sin: str = "exact"
    ) -> None:
        super().__init__(
            spec,
            {
                name: torch.tensor(np.stack([np.asarray(p[name], np.float32) for p in params]), device=device)
                .requires_grad_(True)
                for name in spec.param_shapes()
            },
            sin=sin,
        )

    @classmethod
    def from_init(cls, spec, init: Mapping[str, np.ndarray], n: int, device) -> TorchBatchedNerfs:
        return cls(spec, [init] * n, device)

    def parameters(self) -> list[Tensor]:
        return list(self.params.values())

    def field(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self(x)

    def canonical(self) -> list[dict[str, np.ndarray]]:
        return [{k: v[b].detach().cpu().numpy().astype(np.float32) for k, v in self.params.items()} for b in range(self.n_fields)]


class TcnnBatchedNerfs:  # pragma: no cover - needs CUDA and tiny-cuda-nn
    """B tiny-cuda-nn NeRFs (one module each); the batch is a loop inside ``field``."""

    def __init__(self, spec, params: Sequence[Mapping[str, np.ndarray]], device) -> None:
        from nfkit.nerf.tcnn_backend import TcnnField

        self.spec = spec
        self.modules = [TcnnField(spec, p, device=device) for p in params]

    @classmethod
    def from_init(cls, spec, init, n: int, device) -> TcnnBatchedNerfs:
        return cls(spec, [init] * n, device)

    def parameters(self) -> list[Tensor]:
        return [p for m in self.modules for p in m.parameters()]

    @property
    def n_fields(self) -> int:
        return len(self.modules)

    def _one(self, b: int, x: Tensor) -> tuple[Tensor, Tensor]:
        rgb, sigma = self.modules[b](x)
        return rgb.float(), sigma.float()

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        outs = [self._one(b, x[b]) for b in range(len(self.modules))]
        return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])

    def field(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self(x)

    def density(self, x: Tensor) -> Tensor:
        return self.field(x)[1]

    def density_one(self, b: int, x: Tensor) -> Tensor:
        return self._one(b, x)[1]

    def canonical(self) -> list[dict[str, np.ndarray]]:
        return [{k: v.numpy().astype(np.float32) for k, v in m.to_canonical().items()} for m in self.modules]


def make_model(spec, params: Sequence[Mapping[str, np.ndarray]], device, backend: str = "torch"):
    if backend == "tcnn":
        return TcnnBatchedNerfs(spec, params, device)
    if backend != "torch":
        raise ConfigError(f"unknown backend {backend!r}; expected torch or tcnn")
    return TorchBatchedNerfs(spec, params, device)


def make_sampler(config: FitConfig, n_nerfs: int, device, generator: torch.Generator | None):
    """The sampler ``config.sampler`` asks for on ``device`` (``auto``: nerfacc on CUDA)."""
    kind = config.sampler
    on_cuda = torch.device(device).type == "cuda"
    if kind == "auto":
        kind = "nerfacc" if on_cuda and nerfacc_cuda_available() else "grid"
    if kind == "nerfacc":
        if not on_cuda:
            raise ConfigError("sampler 'nerfacc' needs a CUDA device; use sampler=grid on the CPU")
        return NerfaccSampler(
            n_nerfs,
            config.samples,
            config.grid_res,
            config.grid_every,
            config.grid_warmup,
            config.grid_ema,
            config.occ_thre,
            config.early_stop_eps,
            config.alpha_thre,
            device=device,
        )
    return GridSampler(
        n_nerfs,
        config.samples,
        config.grid_res,
        config.grid_every,
        config.grid_warmup,
        config.grid_ema,
        config.occ_thre,
        device=device,
        generator=generator,
        early_stop_eps=config.early_stop_eps,
    )


# ---------------------------------------------------------------------- visual hull
def carve_hulls(scenes: Sequence[Scene], sampler, config: FitConfig) -> list[Scene]:
    """Limit the sampler's occupancy grid to each scene's visual hull (:mod:`nfkit.fit.hull`)
    and, with ``config.hull_rays``, return the scenes with their ray pools set to the
    pixels whose ray crosses the hull. Scenes without masks are left unconstrained."""
    from nfkit.fit.hull import cell_rectangles, hull_pixel_mask, visual_hull

    if not isinstance(sampler, GridSampler):
        raise ConfigError("hull=true needs the torch grid sampler (sampler=grid)")
    r = sampler.grid.resolution
    hulls, out = [], []
    for s in scenes:
        if s.train_alpha is None:
            hulls.append(torch.ones(r**3, dtype=torch.bool))
            out.append(s)
            continue
        c2w = s.train_c2w.cpu()
        rects = cell_rectangles(c2w, s.focal, s.height, s.width, r, sampler.aabb)
        hull = visual_hull(s.train_alpha.cpu(), c2w, s.focal, r, sampler.aabb, rectangles=rects)
        if not hull.any():  # masks that agree on nothing (bad cameras): do not carve
            log.warning("%s: the masks' visual hull is empty; fitting without it", s.key)
            hull = torch.ones(r**3, dtype=torch.bool)
        hulls.append(hull)
        if config.hull_rays:
            keep = hull_pixel_mask(hull, c2w, s.focal, s.height, s.width, r, sampler.aabb, rectangles=rects).reshape(-1)
            pool = torch.nonzero(keep)[:, 0].to(s.train_rgba.device) if keep.any() else None
            s = dataclasses.replace(s, ray_pool=pool)
        out.append(s)
    sampler.grid.carve(torch.stack(hulls).to(sampler.grid.device))
    return out


def _lift_hull(sampler, model, scenes: Sequence[Scene], config: FitConfig, gen) -> list[Scene]:
    """Drop the hull: the grid is rebuilt from the density alone and rays come from every pixel."""
    sampler.grid.limit = None
    sampler.grid.update(0, lambda x: model.density(x) * sampler.step_size, occ_thre=config.occ_thre,
                        ema_decay=0.0, warmup_steps=1, generator=gen)
    return [dataclasses.replace(s, ray_pool=None) for s in scenes]


class EmptySpace:
    """The density loss outside the visual hull: the masks say nothing is there, so the mean
    opacity ``1 − exp(−σ·δ)`` of one render step δ at ``points`` random points of the cells
    outside each NeRF's hull. Without it the weights there stay as the init made them, and a
    NeRF rendered without the hull (every later stage) shows that fog."""

    def __init__(self, grid, step_size: float, points: int) -> None:
        """``grid``: the carved :class:`~nfkit.render.occupancy.OccupancyGrid` (its ``limit`` is the hull)."""
        self.grid, self.step_size, self.points = grid, step_size, points
        limit = grid.limit
        outside = [torch.nonzero(~row)[:, 0] for row in limit]
        self.counts = torch.tensor([len(c) for c in outside], device=limit.device)
        width = max(int(self.counts.max()), 1)
        self.cells = torch.zeros(len(outside), width, dtype=torch.long, device=limit.device)
        for b, c in enumerate(outside):
            self.cells[b, : len(c)] = c

    def loss(self, density_fn, generator: torch.Generator) -> Tensor:
        b = len(self.cells)
        device = self.cells.device
        pick = (torch.rand((b, self.points), generator=generator, device=device) * self.counts[:, None]).long()
        cells = self.cells.gather(1, pick.clamp_(max=self.cells.shape[1] - 1))
        ijk = self.grid.cell_coords(cells).float()
        lo, hi = self.grid.aabb
        x = lo + (ijk + torch.rand((b, self.points, 3), generator=generator, device=device)) * ((hi - lo) / self.grid.resolution)
        occ = density_fn(x) * self.step_size
        per = 1.0 - torch.exp(-occ)
        has = (self.counts > 0).to(per.dtype)
        return (per.mean(dim=1) * has).sum()


# ---------------------------------------------------------------------- fitting
@dataclass
class FitResult:
    """One fitted NeRF. ``seconds`` is its share of the batch's wall time."""

    key: str
    params: dict[str, np.ndarray]
    psnr: float
    seconds: float
    final_loss: float
    samples_per_step: float = math.nan
    """Mean number of samples the field saw per step (after empty-space skipping)."""
    rays_per_step: float = math.nan
    eval_seconds: float = 0.0
    """Its share of the held-out evaluation at the end (included in ``seconds``)."""


def _draw_rays(scenes: Sequence[Scene], n_rays: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(B, R, 3) origins, dirs and (B, R, 4) rgba of random training pixels."""
    o, d, c = [], [], []
    for s in scenes:
        pool = len(s.train_rgba) if s.ray_pool is None else len(s.ray_pool)
        idx = torch.randint(pool, (n_rays,), generator=generator, device=generator.device)
        idx = idx.to(s.train_rgba.device)
        if s.ray_pool is not None:
            idx = s.ray_pool[idx]
        o.append(s.train_origins[idx])
        d.append(s.train_dirs[idx])
        c.append(s.train_rgba[idx])
    return torch.stack(o), torch.stack(d), torch.stack(c)


FEATURE_PARAMS = ("triplane", "hash_table")
DENSE_SAMPLES_PER_NERF = 1 << 22
"""The torch sampler holds (rays × samples) per NeRF densely; the adaptive ray count
(``target_samples``) stays below this many samples per NeRF and step."""


def check_fit_budget(config: FitConfig, device: str | torch.device = "cpu") -> None:
    """Refuse ray counts that cannot be allocated, before anything is allocated.

    ``rays`` is the starting ray count and ``max_rays`` its upper bound; the torch grid sampler
    (any sampler on the CPU) holds (rays × samples) per NeRF densely, at most
    :data:`DENSE_SAMPLES_PER_NERF`.
    """
    from nfkit.errors import ConfigError

    if config.rays > config.max_rays:
        raise ConfigError(
            f"rays={config.rays} is above max_rays={config.max_rays} (the upper bound of the ray count per NeRF and step)"
        )
    if (config.hull or config.hull_rays) and config.resolved(device=str(device)).sampler != "grid":
        raise ConfigError("hull=true needs the torch grid sampler: add --set sampler=grid (or hull=false)")
    if config.hull_rays and not config.hull:
        raise ConfigError("hull_rays=true needs hull=true")
    dense = config.sampler == "grid" or torch.device(device).type != "cuda"
    if dense and config.rays * config.samples > DENSE_SAMPLES_PER_NERF:
        raise ConfigError(
            f"rays={config.rays} x samples={config.samples} = {config.rays * config.samples} samples per NeRF "
            f"and step is above the {DENSE_SAMPLES_PER_NERF} the torch sampler holds in memory; "
            f"use at most {DENSE_SAMPLES_PER_NERF // config.samples} rays"
        )


def _param_groups(model, config: FitConfig) -> list[dict]:
    """MLP weights at ``lr``; tri-plane / hash-table features at ``feature_lr`` when set."""
    if not config.feature_lr or not isinstance(model, TorchBatchedNerfs):
        return [{"params": model.parameters()}]
    feats = [v for k, v in model.params.items() if k in FEATURE_PARAMS]
    mlp = [v for k, v in model.params.items() if k not in FEATURE_PARAMS]
    groups = [{"params": mlp}]
    if feats:
        groups.append({"params": feats, "lr": config.feature_lr})
    return groups


def band_columns(spec, first_band: int) -> Tensor | None:
    """Columns of ``mlp.0`` that read the frequency encoding's bands ``>= first_band`` (the
    encoding's output ``j`` is band ``(j // 2) % freq_bands``; the tri family's C tri-plane
    channels come first); None when the architecture has no such band."""
    if not spec.freq_bands or first_band >= spec.freq_bands:
        return None
    offset = spec.tri_channels if spec.family == "tri" else 0
    band = (torch.arange(spec.freq_dim) // 2) % spec.freq_bands
    return offset + torch.nonzero(band >= first_band)[:, 0]


@torch.no_grad()
def _zero_columns(model, columns: Tensor) -> None:
    model.params["mlp.0"].index_fill_(2, columns, 0.0)


def _zero_with_moments(param: Tensor, opt: torch.optim.Optimizer, zero: Callable[[Tensor], None]) -> None:
    """Apply ``zero`` (an in-place write of zeros) to ``param`` and to its Adam moments, so that
    no later step moves those entries again while they get no gradient."""
    zero(param)
    for key in ("exp_avg", "exp_avg_sq"):
        moment = opt.state.get(param, {}).get(key)
        if moment is not None:
            zero(moment)


@torch.no_grad()
def _cut_bands(model, opt: torch.optim.Optimizer, columns: Tensor, first_band: int) -> None:
    """``FitConfig.band_cut``: set ``mlp.0``'s columns on bands ``>= first_band`` to zero, with
    their Adam moments, and evaluate the lower bands only."""
    _zero_with_moments(model.params["mlp.0"], opt, lambda t: t.index_fill_(2, columns, 0.0))
    model.bands = first_band


def level_floats(spec, first_level: int) -> slice | None:
    """The floats of ``hash_table`` on the hash grid's levels ``>= first_level`` (level-major,
    ``entry·F + feature``: one contiguous tail); None when the architecture has no such level."""
    if spec.family != "hash" or first_level >= spec.hash_levels:
        return None
    return slice(hash_levels(spec)[first_level].offset * spec.hash_features, None)


@torch.no_grad()
def _cut_levels(model, opt: torch.optim.Optimizer, floats: slice, first_level: int) -> None:
    """``FitConfig.level_cut``: set the hash table's entries on levels ``>= first_level`` to zero
    with their Adam moments, and encode the coarser levels only. Those entries then get no
    gradient, so Adam leaves them at exactly zero."""
    _zero_with_moments(model.params["hash_table"], opt, lambda t: t[:, floats].zero_())
    model.levels = first_level


def band_penalty(model, columns: Tensor) -> Tensor:
    """``Σ_b ½ Σ w²`` over the given ``mlp.0`` columns of every NeRF (``FitConfig.band_l2``)."""
    w = model.params["mlp.0"][:, :, columns]
    return 0.5 * (w * w).sum()


def fit_batch(
    spec,
    init: Mapping[str, np.ndarray],
    scenes: Sequence[Scene],
    config: FitConfig,
    device: str | torch.device = "cpu",
    backend: str = "torch",
    seed: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> list[FitResult]:
    """Fit one NeRF per scene, all starting from ``init``; returns them in order."""
    if not scenes:
        raise ValueError("no scenes to fit")
    check_fit_budget(config, device)
    device = torch.device(device)
    t_start = time.perf_counter()
    n = len(scenes)
    gen = torch.Generator(device=device)
    gen.manual_seed(config.seed if seed is None else seed)
    model = make_model(spec, [init] * n, device, backend)
    opt = torch.optim.Adam(_param_groups(model, config), lr=config.lr, eps=config.adam_eps)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=config.milestone_steps(), gamma=config.lr_gamma)
    sampler = make_sampler(config, n, device, gen)
    empty = None
    if config.hull:
        scenes = carve_hulls(scenes, sampler, config)
        if config.empty_weight > 0 and config.empty_points > 0 and sampler.grid.limit is not None:
            empty = EmptySpace(sampler.grid, sampler.step_size, config.empty_points)
    band_cols = band_columns(spec, config.band_l2_from) if config.band_l2 > 0 else None
    if band_cols is not None:
        if not isinstance(model, TorchBatchedNerfs):
            raise ConfigError("band_l2 needs the torch backend (set band_l2=0 with tcnn)")
        band_cols = band_cols.to(device)
    # band_cut: from this step on, mlp.0's columns on the penalised bands are exactly zero
    cut_step = int(round(config.band_cut * config.steps)) if band_cols is not None and config.band_cut > 0 else -1
    # level_cut: likewise the hash table's finer levels
    cut_floats = level_floats(spec, config.level_cut_from) if config.level_cut > 0 else None
    if cut_floats is not None and not isinstance(model, TorchBatchedNerfs):
        raise ConfigError("level_cut needs the torch backend (set level_cut=0 with tcnn)")
    level_step = int(round(config.level_cut * config.steps)) if cut_floats is not None else -1
    n_rays = config.rays
    max_rays = config.max_rays
    if isinstance(sampler, GridSampler):  # dense (rays, samples) arrays: bound their size
        max_rays = max(16, min(max_rays, DENSE_SAMPLES_PER_NERF // config.samples))
    loss_value = math.nan
    evaluated = torch.zeros(n, dtype=torch.float64)
    rays_total = 0
    release = config.steps - int(round(config.hull_release * config.steps)) if config.hull else config.steps
    field = model if isinstance(model, TorchBatchedNerfs) else model.field  # the former skips padding
    for step in range(config.steps):
        if step == release and sampler.grid.limit is not None:
            # the last steps see what a renderer without the hull sees: the grid rebuilt from
            # the density, rays through every pixel; the photometric loss clears any fog left
            scenes, empty = _lift_hull(sampler, model, scenes, config, gen), None
        if step == cut_step:
            _cut_bands(model, opt, band_cols, config.band_l2_from)
        if step == level_step:
            _cut_levels(model, opt, cut_floats, config.level_cut_from)
        sampler.update(step, model.density, model.density_one, getattr(model, "density_ragged", None))
        origins, dirs, rgba = _draw_rays(scenes, n_rays, gen)
        if config.random_background:
            bg = torch.rand((n, 1, 3), generator=gen, device=device)
        else:
            bg = torch.zeros((n, 1, 3), device=device)
        target = rgba[..., :3] * rgba[..., 3:] + bg * (1.0 - rgba[..., 3:])
        out = sampler.render(field, origins, dirs, bg, stratified=True, density_one=model.density_one)
        alive = (out.opacity > 0).to(target.dtype)
        per_ray = F.smooth_l1_loss(out.rgb, target, reduction="none").mean(dim=-1)
        per_nerf = (per_ray * alive).sum(dim=1) / alive.sum(dim=1).clamp_min(1.0)
        loss = per_nerf.sum()
        if empty is not None:
            loss = loss + config.empty_weight * empty.loss(model.density, gen)
        cut = 0 <= cut_step <= step
        if band_cols is not None and not cut:
            loss = loss + config.band_l2 * band_penalty(model, band_cols)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cut:
            _zero_columns(model, band_cols)
        sched.step()
        loss_value = float(loss.detach()) / n
        evaluated += out.n_evaluated.double().cpu()
        rays_total += n_rays
        if config.target_samples > 0:
            mean_evaluated = float(out.n_evaluated.float().mean().clamp_min(1.0))
            n_rays = int(min(max(n_rays * config.target_samples / mean_evaluated, 16), max_rays))
        if on_step is not None:
            on_step(step, loss_value)
    if isinstance(sampler, GridSampler) and sampler.grid.limit is not None:
        # the PSNR of the NeRF as every renderer sees it (the grid from its density alone)
        scenes = _lift_hull(sampler, model, scenes, config, gen)
    t_eval = time.perf_counter()
    psnrs = evaluate_scenes(model, sampler, scenes, config)
    eval_seconds = (time.perf_counter() - t_eval) / n
    seconds = (time.perf_counter() - t_start) / n
    params = model.canonical()
    per_step = (evaluated / config.steps).tolist()
    return [
        FitResult(s.key, p, float(q), seconds, loss_value, e, rays_total / config.steps, eval_seconds)
        for s, p, q, e in zip(scenes, params, psnrs, per_step, strict=True)
    ]


# ---------------------------------------------------------------------- evaluation
def psnr_from_mse(mse: float) -> float:
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


@torch.no_grad()
def evaluate_scenes(model, sampler, scenes: Sequence[Scene], config: FitConfig, chunk: int = 4096) -> list[float]:
    """Held-out PSNR (dB) per scene, rendered on black; NaN for scenes without held-out views."""
    n = len(scenes)
    sizes = [len(s.eval_rgba) for s in scenes]
    if max(sizes) == 0:
        return [math.nan] * n
    device = scenes[0].eval_rgba.device
    sq_err = torch.zeros(n, dtype=torch.float64)
    for start in range(0, max(sizes), chunk):
        o, d, c, m = [], [], [], []
        for s, size in zip(scenes, sizes, strict=True):
            stop = min(start + chunk, size)
            idx = torch.arange(start, start + chunk, device=device).clamp_(max=max(size - 1, 0))
            valid = torch.arange(start, start + chunk, device=device) < stop
            if size == 0:
                o.append(torch.zeros(chunk, 3, device=device))
                d.append(torch.tensor([0.0, 0.0, 1.0], device=device).expand(chunk, 3))
                c.append(torch.zeros(chunk, 4, device=device))
            else:
                o.append(s.eval_origins[idx])
                d.append(s.eval_dirs[idx])
                c.append(s.eval_rgba[idx])
            m.append(valid)
        rgba, valid = torch.stack(c), torch.stack(m)
        out = sampler.render(
            model.field, torch.stack(o), torch.stack(d), None, stratified=False,
            n_samples=config.render_samples, density_one=model.density_one, early_stop=True,
        )
        target = rgba[..., :3] * rgba[..., 3:]
        err = ((out.rgb.clamp(0, 1) - target) ** 2).mean(dim=-1) * valid
        sq_err += err.sum(dim=1).double().cpu()
    return [
        psnr_from_mse(float(e) / size) if size else math.nan for e, size in zip(sq_err, sizes, strict=True)
    ]


@torch.no_grad()
def evaluate_params(
    spec,
    params: Sequence[Mapping[str, np.ndarray]],
    scenes: Sequence[Scene],
    config: FitConfig,
    device: str | torch.device = "cpu",
    sin: str = "exact",
) -> list[float]:
    """Held-out PSNR of given parameters (e.g. the shared init, or stored NeRFs with their
    ``NerfRecord.sin``), with a grid rebuilt from their density."""
    model = TorchBatchedNerfs(spec, params, device, sin=sin)
    sampler = GridSampler(len(params), config.samples, config.grid_res, occ_thre=config.occ_thre, device=device,
                          early_stop_eps=config.early_stop_eps)
    sampler.grid = grid_from_field(model, config.grid_res, sampler.step_size, config.occ_thre, sampler.aabb, passes=1)
    return evaluate_scenes(model, sampler, scenes, config)
