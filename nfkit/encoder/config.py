"""Configuration of ``pretrain-encoder``, with named presets.

``paper`` is the seeds' recipe (SPEC §5, §10; seed 000 Appendix B and D): GMN hidden 128,
4 layers, 1024-d embedding, decoder 4 × 1024, 25k foreground / 10k background points per
NeRF (512 rays), batch 8 (4 objects × 2 architectures), AdamW lr 1e-4 wd 1e-2 with one-cycle,
250 epochs, mixed precision on CUDA. For a GPU.

``cpu`` trains an encoder for all three families on 2 CPU cores in about 10 minutes on the demo
dataset (78 training objects × 3 architectures). What it changes, and why (measured on the
2-core development machine; see the closing notes of the encoder issue):

- hidden 32 (paper 128): the message passing costs ∝ h², 16× less;
- per step, at most 4096 edges of each block (``max_block_edges``: a random subset of the
  sources of the tri-plane (256 of its 3·32² locations), of each hash level (2048 of 4096
  entries) and of the first layer's inputs) and 2048 readout edges (``readout_edges``): a mean
  over a random subset of a block's edges is an unbiased estimate of the mean over all of them,
  and a tri graph drops from 77k to 17k edges; ``embed`` always uses every edge;
- decoder 128 wide, 32 rays and 256 background points per NeRF per step, 64 samples per ray:
  the rendering loss then costs about as much as the encoder;
- ``decoder_norm``: the embedding is standardised per dimension before the decoder
  (``nfkit/models/decoder.py`` says why);
- ``embed_norm``: when training ends, the embedding that ``embed`` writes is standardised per
  dimension by the training embeddings' statistics (``nfkit/models/scale.py`` says why);
- lr 1e-3 (paper 1e-4 over 250 epochs; a short run needs the larger step);
- 12 epochs;
- then 5000 steps of the render decoder (``refit_steps``; nfkit/encoder/refit.py says why), a
  tri-plane decoder (``refit_decoder="planes"``, 32² texels × 8 channels per plane, 4 bands;
  nfkit/models/plane_decoder.py), about 3 minutes. On the demo data its validation PSNR through
  its own occupancy grid is 24.7 dB (16.6 dB for the training decoder, whose renders are boxes
  of fog; 20.9 dB for the implicit render decoder of 800 steps, which took 90 s), and CLIP
  assigns the renders of 42 % of the GAN samples to their class (13 classes; the implicit
  decoder's: 8 %, all of them drawn as the same blob).

``tiny`` is for tests (seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nfkit.config import Presets, StageConfig, option
from nfkit.config import field_help as _field_help
from nfkit.errors import ConfigError

LOSSES = ("r", "r+c", "c")
ENCODERS = ("gmn", "nf2vec")


def _f(default, help: str, **kw):  # noqa: A002 - `help` reads best here
    return option(default, help, **kw)


@dataclass(frozen=True)
class EncoderConfig(StageConfig):
    """Every hyper-parameter of ``pretrain-encoder``; each field's ``help`` is its CLI help."""

    # model
    encoder: str = _f("gmn", choices=ENCODERS, help="encoder: gmn (every architecture) or nf2vec (one architecture; needs graphs built with --nf2vec)")
    hidden: int = _f(128, "GMN hidden width")
    layers: int = _f(4, "GMN message-passing layers (the last updates edges only)")
    embed_dim: int = _f(1024, "embedding width (the readout's output)")
    decoder_hidden: int = _f(1024, "implicit decoder hidden width (4 layers)")
    decoder_freq: int = _f(24, "frequency bands of the decoder's position encoding")
    embed_norm: bool = _f(False, "when training ends, standardise the embedding per dimension by the statistics of the training embeddings, stored in the checkpoint (the decoder undoes it): every later stage sees standardised embeddings (nfkit's addition; nfkit/models/scale.py)")
    value_norm: str = _f("layer", choices=("layer", "edge"), help="standardise the GMN's edge values per (edge layer, edge type) over the training graphs, or per edge of each trained layout (nfkit's addition; nfkit/models/edge_norm.py says what it measured): NeRFs of one shared init differ by small changes of each weight. An architecture the encoder never saw gets the per-(layer, type) statistics either way")
    decoder_norm: bool = _f(False, "standardise the embedding per dimension (batch statistics) before the decoder (nfkit's addition; see nfkit/models/decoder.py)")
    # loss
    loss: str = _f("r+c", choices=LOSSES, help="r (rendering), r+c (rendering + SigLIP), c (SigLIP only; no decoder)")
    lambda_c: float = _f(0.02, "weight of the SigLIP term in r+c")
    fg_weight: float = _f(0.8, "weight of the foreground term of the rendering loss")
    bg_weight: float = _f(0.2, "weight of the background term of the rendering loss")
    occ_weight: float = _f(0.0, "weight of an occupancy term (nfkit's addition; nfkit/losses.py occupancy_loss): binary cross-entropy between the decoder's one-step opacity and the input NeRF's occupancy grid at occ_points points (half uniform in the box, half in occupied cells). The rendering loss marches the decoder only through the input NeRF's grid, so it never learns where the object is not: a decoder trained without this term keeps a near-uniform density and renders a cube of fog through its own grid (generation, interpolation). Measured on the demo data, the term teaches the geometry only after about a hundred visits of each object, far more than the cpu preset's 12 epochs")
    occ_points: int = _f(512, "points per NeRF per step for the occupancy term")
    # rendering targets
    fg_rays: int = _f(512, "foreground rays per NeRF per step (the decoder marches them through the NeRF's grid)")
    bg_points: int = _f(10000, "background points per NeRF per step")
    pool_rays: int = _f(8192, "foreground rays rendered once per NeRF, drawn from at every step")
    cast_rays: int = _f(32768, "rays cast per NeRF to find the foreground pool")
    bg_pool: int = _f(20000, "background points drawn once per NeRF")
    render_samples: int = _f(256, "samples per ray across the object box, for targets and decoder")
    grid_res: int = _f(96, "occupancy grid resolution of the input NeRFs")
    # optimisation
    epochs: int = _f(250, "training epochs (each object once per epoch)")
    batch_objects: int = _f(4, "objects per step; each in two architectures, so 2x graphs")
    lr: float = _f(1e-4, "AdamW peak learning rate (one-cycle)")
    weight_decay: float = _f(1e-2, "AdamW weight decay")
    pct_start: float = _f(0.3, "one-cycle: fraction of the steps spent warming up")
    max_block_edges: int = _f(0, "per step, keep at most this many edges of each block (a random subset of its sources: tri-plane locations, hash entries, MLP inputs); 0 = all")
    readout_edges: int = _f(0, "per step, average the readout over this many random edges; 0 = all")
    amp: bool = _f(True, "mixed precision (float16 autocast + grad scaler) on CUDA; ignored on the CPU")
    grad_clip: float = _f(1.0, "clip the gradient norm (0 = off)")
    seed: int = _f(0, "random seed (model init, batches, samples)")
    # the render decoder (nfkit's addition; nfkit/encoder/refit.py)
    refit_steps: int = _f(0, "after training, fit a render decoder to the frozen training embeddings for this many steps (0 = off; ignored for loss c, which trains no decoder): it learns each NeRF's density and colour at points of the whole box, so that a decoded embedding rendered through its own occupancy grid (generate, render --decoder) shows the object, not a box of fog. Stored in best.h5 (and last.h5 when it holds the same encoder); the encoder and its embeddings do not change. --resume with other refit_* settings refits it and keeps the encoder (refit_steps=0 keeps the one there)")
    refit_decoder: str = _f("mlp", choices=("mlp", "planes"), help="the render decoder's kind: mlp (the seeds' implicit decoder, conditioned on the embedding at every point) or planes (the embedding turned once per object into three feature planes that each point reads, then a small MLP; nfkit/models/plane_decoder.py)")
    refit_plane_res: int = _f(32, "planes decoder: texels per side of each feature plane")
    refit_plane_channels: int = _f(8, "planes decoder: feature channels per plane")
    refit_dims: int = _f(32, "principal components of the training embeddings the render decoder reads, each whitened to unit variance")
    refit_freq: int = _f(8, "frequency bands of the render decoder's position encoding")
    refit_lr: float = _f(1e-3, "AdamW peak learning rate of the render decoder (one-cycle)")
    refit_batch: int = _f(16, "NeRFs per render-decoder step")
    refit_points: int = _f(2048, "points per NeRF per render-decoder step")
    refit_pool: int = _f(8192, "points drawn once per NeRF (half uniform, half in its occupied cells), with its opacity and colour there")
    # validation
    val_every: int = _f(5, "validate every N epochs (and after the last)")
    val_nerfs: int = _f(39, "validation NeRFs to render (at most)")
    val_resolution: int = _f(64, "validation image size (pixels)")

    def validate(self) -> None:
        positive = ("hidden", "layers", "embed_dim", "decoder_hidden", "epochs", "batch_objects",
                    "fg_rays", "pool_rays", "cast_rays", "render_samples", "grid_res", "val_resolution")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("bg_points", "bg_pool", "max_block_edges", "occ_weight", "occ_points", "readout_edges", "val_nerfs", "decoder_freq",
                     "refit_steps", "refit_freq"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (self.lr > 0 and self.weight_decay >= 0 and 0 < self.pct_start < 1 and self.val_every >= 1):
            raise ConfigError("lr > 0, weight_decay >= 0, 0 < pct_start < 1 and val_every >= 1 are required")
        if self.refit_steps > 0 and self.uses_decoder:
            if not (1 <= self.refit_dims <= self.embed_dim and self.refit_batch >= 2 and self.refit_points >= 1
                    and self.refit_pool >= self.refit_points and self.refit_lr > 0):
                raise ConfigError("refit_dims in [1, embed_dim], refit_batch >= 2, 1 <= refit_points <= refit_pool and refit_lr > 0 are required")
            if self.refit_decoder == "planes" and not (self.refit_plane_res >= 2 and self.refit_plane_channels >= 1):
                raise ConfigError("refit_plane_res >= 2 and refit_plane_channels >= 1 are required")
        if self.pool_rays > self.cast_rays:
            raise ConfigError(f"pool_rays ({self.pool_rays}) cannot exceed cast_rays ({self.cast_rays})")

    @property
    def uses_decoder(self) -> bool:
        return self.loss in ("r", "r+c")

    @property
    def uses_contrastive(self) -> bool:
        return self.loss in ("r+c", "c")


PRESETS: Presets[EncoderConfig] = Presets(
    EncoderConfig,
    paper=EncoderConfig(),
    cpu=EncoderConfig(
        hidden=32,
        decoder_hidden=128,
        decoder_norm=True,
        embed_norm=True,
        fg_rays=32,
        bg_points=256,
        pool_rays=1024,
        cast_rays=4096,
        bg_pool=4096,
        render_samples=64,
        grid_res=32,
        epochs=12,
        lr=1e-3,
        max_block_edges=4096,
        readout_edges=2048,
        val_every=4,
        val_resolution=48,
        refit_steps=5000,
        refit_decoder="planes",
        refit_freq=4,
    ),
    tiny=EncoderConfig(
        hidden=8,
        layers=2,
        embed_dim=16,
        decoder_hidden=16,
        decoder_freq=4,
        fg_rays=8,
        bg_points=16,
        pool_rays=64,
        cast_rays=256,
        bg_pool=64,
        render_samples=16,
        grid_res=8,
        epochs=2,
        batch_objects=2,
        lr=1e-3,
        max_block_edges=256,
        readout_edges=256,
        val_every=1,
        val_nerfs=4,
        val_resolution=8,
        refit_steps=10,
        refit_decoder="planes",
        refit_plane_res=8,
        refit_plane_channels=4,
        refit_dims=8,
        refit_freq=4,
        refit_batch=4,
        refit_points=64,
        refit_pool=128,
    ),
)


def field_help() -> dict[str, str]:
    return _field_help(EncoderConfig)


def resolve_config(preset: str, overrides: dict[str, Any] | None = None) -> EncoderConfig:
    """A preset with overrides applied (strings as from ``--set key=value`` are parsed)."""
    return PRESETS.resolve(preset, {k.replace("-", "_"): v for k, v in (overrides or {}).items()})
