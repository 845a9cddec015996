"""Configuration of NeRF fitting, with named presets.

``paper`` is the reference recipe (SPEC §3; the authors' NerfAcc fork, seed 001 §3.2 and
Appendix B): 1500 steps, Adam lr 1e-2 eps 1e-15, MultiStepLR γ=0.33 at 50/75/90 % of the
steps, smooth-L1 on alive rays, occupancy grid 128³ updated every 16 steps after a 256-step
warm-up (nerfacc's defaults), random background per batch, native 224×224 images, and
nerfacc's NGP ray budget (256 rays to start, then as many rays as give ~2¹⁸ samples per step,
render step = box diagonal / 1024).

``cpu`` is tuned for a 2-core CPU on 64×64 images (see ``nfkit/bench/fit.py`` and the
numbers in the report); ``tiny`` is for tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from nfkit.config import Presets, StageConfig, group, option
from nfkit.config import field_help as _field_help
from nfkit.config import parse_set_options as parse_set_options


@dataclass(frozen=True)
class FamilyTuning(StageConfig):
    """What one NeRF family (mlp, tri or hash) changes of the global recipe; 0 keeps it."""

    steps: int = option(0, "optimisation steps (0 = the global steps)", check=lambda v: v >= 0, must='>= 0')
    rays: int = option(0, "rays per NeRF per step (0 = the global rays)", check=lambda v: v >= 0, must='>= 0')
    samples: int = option(0, "samples per ray (0 = the global samples)", check=lambda v: v >= 0, must='>= 0')
    lr: float = option(0.0, "learning rate (0 = the global lr)", check=lambda v: v >= 0, must='>= 0')
    feature_lr: float = option(0.0, "feature learning rate (0 = the global feature_lr)", check=lambda v: v >= 0, must='>= 0')


@dataclass(frozen=True)
class FitConfig(StageConfig):
    """Every hyper-parameter of ``fit-nerfs``; each field's ``help`` is its CLI help."""

    steps: int = option(1500, "optimisation steps per NeRF", check=lambda v: v >= 1, must='>= 1')
    lr: float = option(1e-2, "Adam learning rate", check=lambda v: v > 0, must='> 0')
    feature_lr: float = option(
        0.0, "learning rate of the tri-plane / hash-table parameters (0 = the same as lr)", check=lambda v: v >= 0, must='>= 0')
    adam_eps: float = option(1e-15, "Adam epsilon")
    lr_milestones: tuple[float, ...] = option(
        (0.5, 0.75, 0.9), "fractions of the steps where the learning rate is multiplied by lr_gamma", check=lambda v: all(0 < m <= 1 for m in v), must='fractions in (0, 1]')
    lr_gamma: float = option(0.33, "MultiStepLR decay factor")
    rays: int = option(256, "rays per NeRF per step (the starting value when target_samples > 0)", check=lambda v: v >= 1, must='>= 1')
    target_samples: int = option(
        1 << 18,
        "if > 0, adapt the rays per step so that about this many samples per NeRF reach the field "
        "(nerfacc's dynamic batch); 0 keeps `rays` fixed", check=lambda v: v >= 0, must='>= 0')
    max_rays: int = option(65536, "upper bound of the adaptive ray count")
    samples: int = option(
        1024,
        "samples per ray across the object box; the render step size is box diagonal / samples", check=lambda v: v >= 1, must='>= 1')
    eval_samples: int = option(0, "samples per ray when evaluating/rendering (0 = same as samples)", check=lambda v: v >= 0, must='>= 0')
    grid_res: int = option(128, "occupancy grid resolution per axis", check=lambda v: v >= 1, must='>= 1')
    grid_every: int = option(16, "update the occupancy grid every N steps", check=lambda v: v >= 1, must='>= 1')
    grid_warmup: int = option(256, "steps during which every grid cell is re-evaluated")
    grid_ema: float = option(0.95, "EMA decay of the occupancy values", check=lambda v: 0.0 <= v <= 1.0, must='in [0, 1]')
    occ_thre: float = option(0.01, "occupancy threshold on density × step size")
    early_stop_eps: float = option(
        1e-4,
        "stop marching a ray once its transmittance is below this (nerfacc's early stopping; the grid "
        "sampler does so in the held-out evaluation, checking it after every few occupied samples); 0 = never", check=lambda v: 0 <= v < 1, must='in [0, 1)')
    alpha_thre: float = option(0.0, "nerfacc sampler: skip samples with a lower opacity")
    resolution: int = option(0, "image resolution used for fitting and evaluation (0 = the dataset's)", check=lambda v: v >= 0, must='>= 0')
    max_views: int = option(0, "use at most this many views per object (0 = all)", check=lambda v: v >= 0, must='>= 0')
    eval_every: int = option(6, "hold out every N-th view (views 0, N, 2N, ...) for evaluation; 0 = none", check=lambda v: v >= 0, must='>= 0')
    batch_nerfs: int = option(8, "NeRFs fitted together in one batched model (and stored in one shard)", check=lambda v: v >= 1, must='>= 1')
    random_background: bool = option(True, "alpha-composite the targets on a random colour per step")
    sampler: str = option(
        "auto",
        "'grid' (torch occupancy grid, any device), 'nerfacc' (OccGridEstimator, CUDA) or 'auto' "
        "(nerfacc on CUDA when its extension loads, else grid)",
        choices=("auto", "grid", "nerfacc"),
    )
    seed: int = option(0, "random seed of ray sampling and backgrounds")
    hull: bool = option(
        False,
        "carve the occupancy grid to the visual hull of the training views' alpha masks before step 0 "
        "and keep it inside (no sample, and no floater, outside the hull)")
    empty_weight: float = option(
        0.1, "with hull: weight of the density loss at random points outside the hull (0 = none)", check=lambda v: v >= 0, must='>= 0')
    empty_points: int = option(512, "with hull: points per NeRF and step of that loss", check=lambda v: v >= 0, must='>= 0')
    hull_release: float = option(
        0.0,
        "with hull: fraction of the last steps fitted without it (grid from the density alone, rays through "
        "every pixel), so the photometric loss clears what a renderer without the hull would see",
        check=lambda v: 0.0 <= v <= 1.0, must='in [0, 1]')
    hull_rays: bool = option(
        False, "with hull: draw rays only among pixels whose ray crosses the hull (the others carry no gradient)")
    band_l2: float = option(
        0.0,
        "L2 penalty (weight/2 * sum of squares, per NeRF) on the first layer's weights of the frequency "
        "encoding's bands >= band_l2_from. Those bands oscillate faster than the images resolve; from the "
        "shared init their weights only add noise (speckle, streaks) that Adam keeps stirring. 0 = none",
        check=lambda v: v >= 0, must='>= 0')
    band_l2_from: int = option(
        5, "first frequency band (0-based, band f is sin/cos(2^f pi u)) that band_l2 penalises",
        check=lambda v: v >= 0, must='>= 0')
    band_cut: float = option(
        0.0,
        "with band_l2: fraction of the steps after which the first layer's weights on bands >= band_l2_from "
        "are set to exactly zero and kept there; the rest of the fit evaluates only the lower bands (less "
        "work, the same function: the stored NeRF keeps its architecture and every stage renders all its "
        "bands). 0 = never", check=lambda v: 0.0 <= v < 1.0, must='in [0, 1)')
    level_cut: float = option(
        0.0,
        "hash family: fraction of the steps after which the hash table's entries on levels >= level_cut_from "
        "are set to exactly zero and kept there; the rest of the fit encodes only the coarser levels (less "
        "work; the stored NeRF keeps every level and every stage evaluates them). 0 = never",
        check=lambda v: 0.0 <= v < 1.0, must='in [0, 1)')
    level_cut_from: int = option(
        2, "first hash-grid level (0-based, coarse to fine) that level_cut sets to zero",
        check=lambda v: v >= 1, must='>= 1')

    mlp: FamilyTuning = group(FamilyTuning, "changes for the mlp family (e.g. --set mlp.steps=240)")
    tri: FamilyTuning = group(FamilyTuning, "changes for the tri family")
    hash: FamilyTuning = group(FamilyTuning, "changes for the hash family")

    def for_family(self, family: str) -> FitConfig:
        """The recipe one family runs: the global fields with that family's non-zero changes."""
        tuning = getattr(self, family, None)
        if not isinstance(tuning, FamilyTuning):
            return self
        changes = {k: v for k, v in tuning.to_dict().items() if v}
        return dataclasses.replace(self, **changes) if changes else self

    @property
    def render_samples(self) -> int:
        return self.eval_samples or self.samples

    def milestone_steps(self) -> list[int]:
        return sorted({max(int(round(m * self.steps)), 1) for m in self.lr_milestones})

    def resolved(self, device: str = "cpu", **context: Any) -> FitConfig:
        """The config as it runs on ``device``: ``sampler=auto`` becomes ``nerfacc`` (CUDA with
        nerfacc's extension) or ``grid``."""
        if self.sampler != "auto":
            return self
        from nfkit.render.samplers import nerfacc_cuda_available

        on_cuda = str(device).startswith("cuda")
        return dataclasses.replace(self, sampler="nerfacc" if on_cuda and nerfacc_cuda_available() else "grid")


PRESETS: Presets[FitConfig] = Presets(
    FitConfig,
    paper=FitConfig(),
    # Tuned on a 2-core CPU at 64x64 on two sets at once: 8 procedural objects (held-out training
    # views) and the 8 real objects of nfkit/bench/realset (PyBullet renders, separate test
    # cameras); `python -m nfkit.bench.fit` measures it (numbers in the README).
    # - hull: the grid starts as the visual hull of the masks and stays inside it, and rays are
    #   drawn only through it (3/4 of uniformly drawn rays miss it and carry no gradient);
    #   empty_weight keeps the density low outside it, and the last 20 % of the steps run without
    #   the hull so that the photometric loss clears the fog a renderer without it would see.
    #   Without the release the MLP family kept 1-3 dB of fog outside the hull.
    # - per family: the MLP needs the most rays (blur), tri and hash fewer steps. Hash at 384 rays
    #   (256 before): real objects 29.7 -> 30.2 dB, procedural 29.7 -> 30.2, for 12-23 % more time;
    #   512 gave the real ones 30.9 but cut the lead over the naive loop below 5x on the
    #   procedural set. Its colour mottle is step-limited (600 steps mostly clear it).
    # - grid_ema 0.6 (nerfacc: 0.95) lets the grid drop the initial fog within a few updates.
    # - feature_lr 0.1 (0.2 for hash) speeds up the tri-plane and hash features.
    # - band_l2: bands 5+ of the frequency encoding (periods under ~2 pixels at 64x64) carry
    #   noise only; penalising their first-layer weights gave +2.5 dB (mlp) and +1.2 dB (tri) on
    #   the real objects at the same speed, and took the mlp's streaks and the tri's speckle away.
    # - band_cut 0.1: by a tenth of the steps the penalty has pulled those weights to about zero;
    #   from there they are exactly zero and the fit evaluates bands 0-4 only (mlp.0 reads 30 of
    #   its 144 inputs for mlp, 46 of 304 for tri): same PSNR (real 28.40 -> 28.36 mlp, 28.79 ->
    #   28.68 tri; procedural +0.1 / -0.03 dB), 1.2-1.35x the NeRFs/min (README).
    # - level_cut stays off: zeroing the hash grid's levels 2-3 after a tenth of the steps made
    #   hash fits only 1.05x faster (one process, batches alternated) for +0.12 dB on the real
    #   objects and -0.16 dB on the procedural ones; level 3 alone, 1.01x.
    cpu=FitConfig(
        steps=160,
        lr=1e-2,
        feature_lr=0.1,
        rays=256,
        target_samples=0,
        samples=48,
        grid_res=32,
        grid_every=8,
        grid_warmup=64,
        grid_ema=0.6,
        resolution=64,
        batch_nerfs=4,
        sampler="grid",
        hull=True,
        hull_rays=True,
        hull_release=0.2,
        empty_weight=0.1,
        empty_points=512,
        band_l2=1.0,
        band_l2_from=5,
        band_cut=0.1,
        mlp=FamilyTuning(rays=384),
        tri=FamilyTuning(steps=90),
        hash=FamilyTuning(steps=150, rays=384, feature_lr=0.2),
    ),
    # For tests: a few seconds per NeRF on 32x32 images.
    tiny=FitConfig(
        steps=60,
        lr=1e-2,
        feature_lr=0.1,
        lr_milestones=(0.8, 0.9, 0.95),
        rays=256,
        target_samples=0,
        samples=24,
        grid_res=12,
        grid_every=8,
        grid_warmup=32,
        resolution=32,
        eval_every=4,
        batch_nerfs=4,
        sampler="grid",
    ),
)


def field_help() -> dict[str, str]:
    """Field name -> help text, for the CLI."""
    return _field_help(FitConfig)


def resolve_config(preset: str = "cpu", overrides: dict[str, Any] | None = None) -> FitConfig:
    """A preset with overrides applied (values may be strings, as from ``--set key=value``);
    :class:`~nfkit.errors.ConfigError` on an unknown preset, key or a bad value."""
    return PRESETS.resolve(preset, overrides)
