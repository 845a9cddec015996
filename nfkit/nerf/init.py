"""Shared initialisation: one stored, fingerprinted set of initial weights per architecture.

Every NeRF of one architecture starts from the same random weights (seeds 001 §3.3 and 003
§VIII: a shared init aligns the weights of different NeRFs, gives linear mode connectivity, and
lets an encoder of weights converge). The init is an artifact (kind ``nerf-init``, schema v1,
``data_specs/nerf-init-v1.md``)::

    /                 root attrs: nfkit_* header, arch_spec (JSON), arch_name,
                                  arch_fingerprint, init_fingerprint, seed, generator
    /params/<name>    float32, canonical shape, for every parameter of the spec

``init_fingerprint`` = first 16 hex digits of sha256(arch fingerprint ‖ the float32
little-endian bytes of every tensor in canonical order). NeRF shards record it; NeRFs with
different init fingerprints are not comparable.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nfkit.errors import IncompatibleError
from nfkit.io.artifacts import (
    ArtifactError,
    fingerprint_bytes,
    open_artifact,
    register_reader,
    write_artifact,
)
from nfkit.nerf import field as nerf_field
from nfkit.nerf.specs import ArchSpec
from nfkit.nerf.store import check_params

__all__ = [
    "NERF_INIT",
    "NERF_INIT_VERSION",
    "NerfInit",
    "check_init_matches",
    "create_init",
    "get_or_create_init",
    "init_fingerprint",
    "init_path",
    "load_init",
    "save_init",
]

log = logging.getLogger(__name__)

NERF_INIT = "nerf-init"
NERF_INIT_VERSION = 1

GENERATOR = "torch.Generator(cpu).manual_seed(seed) -> nfkit.nerf.field.init_params"
"""How :func:`create_init` draws the tensors (stored in the artifact for the record)."""


@dataclass
class NerfInit:
    """The shared initial weights of one architecture (canonical layout, float32)."""

    spec: ArchSpec
    params: dict[str, np.ndarray]
    fingerprint: str
    seed: int
    path: Path | None = field(default=None, compare=False)

    def tensors(self, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """The weights as torch tensors (copies)."""
        return {k: torch.tensor(v, device=device) for k, v in self.params.items()}

    def batched(self, n: int, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """``n`` copies stacked on a leading NeRF dimension, ready for ``field.forward``."""
        return {
            k: torch.tensor(v, device=device).unsqueeze(0).repeat(n, *([1] * v.ndim))
            for k, v in self.params.items()
        }


def init_fingerprint(spec: ArchSpec, params: dict[str, np.ndarray]) -> str:
    """sha256 of the architecture fingerprint and the exact float32 bytes, 16 hex digits."""
    check_params(spec, params, batched=False)
    chunks = [spec.fingerprint().encode()]
    for name in spec.param_shapes():
        arr = np.ascontiguousarray(np.asarray(params[name]), dtype="<f4")
        chunks.append(arr.tobytes())
    return fingerprint_bytes(*chunks)


def create_init(spec: ArchSpec, seed: int) -> NerfInit:
    """Draw the initial weights of ``spec`` from ``seed`` (deterministic)."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    tensors = nerf_field.init_params(spec, generator)
    params = {k: v.numpy().astype(np.float32) for k, v in tensors.items()}
    return NerfInit(spec, params, init_fingerprint(spec, params), int(seed))


def from_params(spec: ArchSpec, params: dict[str, np.ndarray], seed: int = -1) -> NerfInit:
    """An init made of given weights (e.g. a reference init imported from elsewhere)."""
    params = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}
    return NerfInit(spec, params, init_fingerprint(spec, params), int(seed))


def save_init(init: NerfInit, path: str | Path) -> Path:
    """Write ``init`` atomically to ``path`` (kind ``nerf-init`` v1)."""
    path = Path(path)
    config = {"seed": init.seed, "generator": GENERATOR}
    inputs = {"arch": init.spec.fingerprint()}
    with write_artifact(path, NERF_INIT, NERF_INIT_VERSION, config=config, inputs=inputs) as f:
        f.attrs["arch_spec"] = init.spec.to_json()
        f.attrs["arch_name"] = init.spec.name
        f.attrs["arch_fingerprint"] = init.spec.fingerprint()
        f.attrs["init_fingerprint"] = init.fingerprint
        f.attrs["seed"] = int(init.seed)
        f.attrs["generator"] = GENERATOR
        g = f.create_group("params")
        for name in init.spec.param_shapes():
            g.create_dataset(name, data=np.asarray(init.params[name], dtype=np.float32))
    init.path = path
    return path


def load_init(path: str | Path) -> NerfInit:
    """Read an init; ArtifactError if it is not a readable, intact ``nerf-init`` artifact."""
    path = Path(path)
    with open_artifact(path, NERF_INIT) as f:
        try:
            spec = ArchSpec.from_dict(json.loads(f.attrs["arch_spec"]))
            stored_fp = str(f.attrs["init_fingerprint"])
            seed = int(f.attrs["seed"])
            params = {name: np.asarray(f["params"][name][()], dtype=np.float32) for name in spec.param_shapes()}
        except (KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{path}: malformed nerf-init artifact ({exc})") from None
        except OSError as exc:
            raise ArtifactError(f"{path}: corrupt nerf-init artifact ({exc.__class__.__name__})") from None
    try:
        fp = init_fingerprint(spec, params)
    except ValueError as exc:
        raise ArtifactError(f"{path}: {exc}") from None
    if fp != stored_fp:
        raise ArtifactError(
            f"{path}: corrupt nerf-init artifact (weights fingerprint {fp} != stored {stored_fp})"
        )
    return NerfInit(spec, params, fp, seed, path)


def init_path(spec: ArchSpec, init_dir: str | Path) -> Path:
    """Where :func:`get_or_create_init` keeps the init of ``spec``: ``<dir>/<name>.init.h5``."""
    return Path(init_dir) / f"{spec.name}.init.h5"


def _describe(spec: ArchSpec) -> str:
    return f"{spec.name} ({spec.family}, arch fingerprint {spec.fingerprint()})"


def check_init_matches(init: NerfInit, spec: ArchSpec) -> None:
    """ValueError unless ``init`` was made for an architecture with ``spec``'s layout."""
    if init.spec.fingerprint() != spec.fingerprint():
        where = str(init.path) if init.path else "(in memory)"
        raise IncompatibleError(
            f"init {where} was made for architecture {_describe(init.spec)}, not {_describe(spec)}"
        )


def get_or_create_init(spec: ArchSpec, init_dir: str | Path, seed: int = 0) -> NerfInit:
    """The shared init of ``spec`` in ``init_dir``, created (from ``seed``) on first use.

    Raises ValueError if the stored file belongs to another architecture or another seed,
    ArtifactError if it is corrupt.
    """
    path = init_path(spec, init_dir)
    if path.exists():
        init = load_init(path)
        check_init_matches(init, spec)
        if init.seed != int(seed):
            raise IncompatibleError(
                f"init {path} was made with seed {init.seed}, not {seed}; "
                "pass the same seed or use another init folder"
            )
        return init
    init = create_init(spec, seed)
    save_init(init, path)
    log.info("created shared init %s (fingerprint %s)", path, init.fingerprint)
    return init


register_reader(NERF_INIT, NERF_INIT_VERSION, load_init)
