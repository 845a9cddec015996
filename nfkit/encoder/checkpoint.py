"""Encoder checkpoints (kind ``encoder``, schema v1; ``data_specs/encoder-v1.md``).

One HDF5 file holds everything needed to embed and to resume:

- ``/state/<module>/<tensor>``: the weights of ``encoder``, ``decoder`` (absent for loss
  ``c``) and ``siglip`` (its t and b), as plain datasets;
- ``/resume``: the optimizer, scheduler and grad-scaler state (``torch.save`` bytes, read back
  with ``weights_only=True``), absent from exported checkpoints;
- root attributes: the resolved config, ``epoch`` (completed), ``step``, ``history`` (JSON, one
  entry per epoch), ``best_metric`` / ``best_epoch``, the graph format it was trained on
  (``graph_kind``, ``graph_version``, ``vocabulary``), ``trained_archs`` (JSON: architecture ->
  fingerprint, init fingerprint, graph structure key), ``nf2vec_width`` and
  ``encoder_fingerprint`` (a content hash of the encoder's weights, which every embedding
  records).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nfkit.encoder.config import EncoderConfig
from nfkit.io.artifacts import (
    ArtifactError,
    open_artifact,
    read_checked,
    register_kind,
    register_reader,
    write_artifact,
)

ENCODER_KIND = "encoder"
ENCODER_VERSION = 1
register_kind(ENCODER_KIND, ENCODER_VERSION)


@dataclass
class Checkpoint:
    config: EncoderConfig
    state: dict[str, dict[str, torch.Tensor]]
    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    best_metric: float = float("nan")
    best_epoch: int = -1
    trained_archs: dict[str, dict] = field(default_factory=dict)
    vocabulary: str = ""
    graph_version: int = 1
    nf2vec_width: int = 0
    resume: bytes | None = None
    path: Path | None = None

    @property
    def encoder_fingerprint(self) -> str:
        return state_fingerprint(self.state["encoder"])


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def module_states(model) -> dict[str, dict[str, torch.Tensor]]:
    out = {"encoder": model.encoder.state_dict()}
    if model.decoder is not None:
        out["decoder"] = model.decoder.state_dict()
    if model.siglip is not None:
        out["siglip"] = model.siglip.state_dict()
    return {k: {n: t.detach().cpu() for n, t in v.items()} for k, v in out.items()}


def resume_bytes(optimizer, scheduler, scaler) -> bytes:
    buf = io.BytesIO()
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
        },
        buf,
    )
    return buf.getvalue()


def save_checkpoint(path: Path, ckpt: Checkpoint, inputs: dict[str, str] | None = None,
                    input_paths: dict[str, list] | None = None) -> Path:
    """``inputs``: content fingerprints of the training graph shards; ``input_paths``: their paths
    (so that ``nfkit status`` can tell when a shard changed after training)."""
    with write_artifact(path, ENCODER_KIND, ENCODER_VERSION, ckpt.config.to_dict(), inputs, input_paths) as f:
        for module, tensors in ckpt.state.items():
            g = f.create_group(f"state/{module}")
            for name, t in tensors.items():
                g.create_dataset(name, data=t.numpy())
        if ckpt.resume is not None:
            f.create_dataset("resume", data=np.void(ckpt.resume))
        f.attrs["epoch"] = ckpt.epoch
        f.attrs["step"] = ckpt.step
        f.attrs["history"] = json.dumps(ckpt.history)
        f.attrs["best_metric"] = ckpt.best_metric
        f.attrs["best_epoch"] = ckpt.best_epoch
        f.attrs["trained_archs"] = json.dumps(ckpt.trained_archs, sort_keys=True)
        f.attrs["graph_kind"] = "graph-shard"
        f.attrs["graph_version"] = ckpt.graph_version
        f.attrs["vocabulary"] = ckpt.vocabulary
        f.attrs["nf2vec_width"] = ckpt.nf2vec_width
        f.attrs["encoder_fingerprint"] = ckpt.encoder_fingerprint
    return path


def load_checkpoint(path: str | Path, with_resume: bool = False) -> Checkpoint:
    path = Path(path)
    with open_artifact(path, ENCODER_KIND) as f:
        try:
            config = EncoderConfig.from_dict(json.loads(f.attrs["nfkit_config"]))
            state = {
                module: {name: torch.from_numpy(np.array(read_checked(ds, path))) for name, ds in f["state"][module].items()}
                for module in f["state"]
            }
            ckpt = Checkpoint(
                config=config,
                state=state,
                epoch=int(f.attrs["epoch"]),
                step=int(f.attrs["step"]),
                history=json.loads(f.attrs["history"]),
                best_metric=float(f.attrs["best_metric"]),
                best_epoch=int(f.attrs["best_epoch"]),
                trained_archs=json.loads(f.attrs["trained_archs"]),
                vocabulary=str(f.attrs["vocabulary"]),
                graph_version=int(f.attrs["graph_version"]),
                nf2vec_width=int(f.attrs["nf2vec_width"]),
                resume=bytes(read_checked(f["resume"], path).tobytes()) if with_resume and "resume" in f else None,
                path=path,
            )
            stored = str(f.attrs["encoder_fingerprint"])
        except KeyError as exc:
            raise ArtifactError(f"{path}: malformed encoder checkpoint (missing {exc})") from None
        except (OSError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{path}: corrupt encoder checkpoint ({exc.__class__.__name__}: {exc})") from None
    if not all(isinstance(n, str) for m in ckpt.state.values() for n in m):
        raise ArtifactError(f"{path}: corrupt encoder checkpoint (a damaged tensor name)")
    if "encoder" not in ckpt.state:
        raise ArtifactError(f"{path}: encoder checkpoint without encoder weights")
    if ckpt.encoder_fingerprint != stored:
        raise ArtifactError(f"{path}: encoder weights do not match their fingerprint (corrupt file)")
    return ckpt


register_reader(ENCODER_KIND, ENCODER_VERSION, load_checkpoint)


def load_resume_state(ckpt: Checkpoint) -> dict:
    if ckpt.resume is None:
        raise ArtifactError(f"{ckpt.path}: checkpoint has no optimizer state to resume from")
    return torch.load(io.BytesIO(ckpt.resume), weights_only=True)
