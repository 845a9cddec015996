"""Configuration of ``pretrain-encoder``, with named presets.

``paper`` is the seeds' recipe (SPEC §5, §10; seed 000 Appendix B and D): GMN hidden 128,
4 layers, 1024-d embedding, decoder 4 × 1024, 25k foreground / 10k background points per
NeRF (512 rays), batch 8 (4 objects × 2 architectures), AdamW lr 1e-4 wd 1e-2 with one-cycle,
250 epochs, mixed precision on CUDA. For a GPU.

``cpu`` trains an encoder for all three families on 2 CPU cores in about 10 minutes on the demo
dataset (78 training objects × 3 architectures). What it changes, and why (measured on the
2-core development machine; see the closing notes of the encoder issue):

- hidden 32 (paper 128): the message passing costs ∝ h², 16× less;
- at most 64 sources per block per step (of the 3·32² tri-plane locations, each hash level's
  4096 entries, the first layer's 144–304 inputs; ``max_src``) and 4096 readout edges (``readout_edges``): those blocks
  are 64–80 % of a tri/hash graph's edges, and the mean over a random subset of a block's
  edges is an unbiased estimate of the mean over all of them; ``embed`` always uses every edge;
- decoder 256 wide, 64 rays and 512 background points per NeRF per step: the rendering loss
  then costs about as much as the encoder;
- lr 1e-3 (paper 1e-4 over 250 epochs; a short run needs the larger step);
- 12 epochs.

``tiny`` is for tests (seconds).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

from nfkit.errors import ConfigError

LOSSES = ("r", "r+c", "c")
ENCODERS = ("gmn", "nf2vec")


def _f(default, help: str, **kw):  # noqa: A002 - `help` reads best here
    return field(default=default, metadata={"help": help}, **kw)


@dataclass(frozen=True)
class EncoderConfig:
    """Every hyper-parameter of ``pretrain-encoder``; each field's ``help`` is its CLI help."""

    # model
    encoder: str = _f("gmn", "encoder: gmn (every architecture) or nf2vec (one architecture; needs graphs built with --nf2vec)")
    hidden: int = _f(128, "GMN hidden width")
    layers: int = _f(4, "GMN message-passing layers (the last updates edges only)")
    embed_dim: int = _f(1024, "embedding width (the readout's output)")
    decoder_hidden: int = _f(1024, "implicit decoder hidden width (4 layers)")
    decoder_freq: int = _f(24, "frequency bands of the decoder's position encoding")
    decoder_norm: bool = _f(False, "standardise the embedding per dimension (batch statistics) before the decoder (nfkit's addition; see nfkit/models/decoder.py)")
    # loss
    loss: str = _f("r+c", "r (rendering), r+c (rendering + SigLIP), c (SigLIP only; no decoder)")
    lambda_c: float = _f(0.02, "weight of the SigLIP term in r+c")
    fg_weight: float = _f(0.8, "weight of the foreground term of the rendering loss")
    bg_weight: float = _f(0.2, "weight of the background term of the rendering loss")
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
    max_src: int = _f(0, "per step, keep at most this many sources of each large block (tri-plane locations, hash entries); 0 = all")
    readout_edges: int = _f(0, "per step, average the readout over this many random edges; 0 = all")
    amp: bool = _f(True, "mixed precision (float16 autocast + grad scaler) on CUDA; ignored on the CPU")
    grad_clip: float = _f(1.0, "clip the gradient norm (0 = off)")
    seed: int = _f(0, "random seed (model init, batches, samples)")
    # validation
    val_every: int = _f(5, "validate every N epochs (and after the last)")
    val_nerfs: int = _f(39, "validation NeRFs to render (at most)")
    val_resolution: int = _f(64, "validation image size (pixels)")

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"loss {self.loss!r}: expected one of {', '.join(LOSSES)}")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"encoder {self.encoder!r}: expected one of {', '.join(ENCODERS)}")
        positive = ("hidden", "layers", "embed_dim", "decoder_hidden", "epochs", "batch_objects",
                    "fg_rays", "pool_rays", "cast_rays", "render_samples", "grid_res", "val_resolution")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("bg_points", "bg_pool", "max_src", "readout_edges", "val_nerfs", "decoder_freq"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (self.lr > 0 and self.weight_decay >= 0 and 0 < self.pct_start < 1 and self.val_every >= 1):
            raise ConfigError("lr > 0, weight_decay >= 0, 0 < pct_start < 1 and val_every >= 1 are required")
        if self.pool_rays > self.cast_rays:
            raise ConfigError(f"pool_rays ({self.pool_rays}) cannot exceed cast_rays ({self.cast_rays})")

    @property
    def uses_decoder(self) -> bool:
        return self.loss in ("r", "r+c")

    @property
    def uses_contrastive(self) -> bool:
        return self.loss in ("r+c", "c")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown encoder config key(s): {', '.join(sorted(unknown))}")
        return cls(**d)


PRESETS: dict[str, EncoderConfig] = {
    "paper": EncoderConfig(),
    "cpu": EncoderConfig(
        hidden=32,
        decoder_hidden=256,
        fg_rays=64,
        bg_points=512,
        pool_rays=1024,
        cast_rays=4096,
        bg_pool=4096,
        render_samples=64,
        grid_res=32,
        epochs=12,
        lr=1e-3,
        max_src=64,
        readout_edges=4096,
        val_every=4,
        val_resolution=48,
    ),
    "tiny": EncoderConfig(
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
        max_src=32,
        readout_edges=256,
        val_every=1,
        val_nerfs=4,
        val_resolution=8,
    ),
}


def field_help() -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in fields(EncoderConfig)}


def _parse(name: str, raw: Any, current: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        if isinstance(current, bool):
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(current, int):
            value = float(raw)
            if not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(current, float):
            return float(raw)
    except ValueError:
        raise ConfigError(f"encoder config {name}={raw!r}: expected a {type(current).__name__}") from None
    return raw.strip().lower()


def resolve_config(preset: str, overrides: dict[str, Any] | None = None) -> EncoderConfig:
    """A preset with overrides applied (strings as from ``--set key=value`` are parsed)."""
    key = preset.strip().lower()
    if key not in PRESETS:
        raise ConfigError(f"unknown encoder preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[key]
    known = {f.name for f in fields(EncoderConfig)}
    changes = {}
    for name, raw in (overrides or {}).items():
        name = name.replace("-", "_")
        if name not in known:
            raise ConfigError(f"unknown encoder config key {name!r}; valid keys: {', '.join(sorted(known))}")
        changes[name] = _parse(name, raw, getattr(base, name))
    return dataclasses.replace(base, **changes)
