"""NeRF architectures as data.

An :class:`ArchSpec` fully describes a NeRF architecture of one of three families
(SPEC §3, seed 000 Table 7):

- ``mlp``:  frequency encoding of xyz -> MLP
- ``tri``:  tri-plane features (summed over the three planes) ‖ frequency encoding -> MLP
- ``hash``: multi-resolution hash grid -> MLP

Canonical parameter layout (the order is part of the on-disk format, see
``data_specs/nerf-v1.md``): an ordered mapping ``name -> shape``

- ``triplane``     (3, C, R, R)          tri family only; planes xy, xz, yz
- ``hash_table``   (n_hash_params,)      hash family only; tiny-cuda-nn layout (level-major,
  entry-major, ``entry * F + feature``, each level padded to a multiple of 8)
- ``mlp.{i}``      (out_i, in_i)         i = 0 .. hidden_layers; no biases; the last has 4 rows
  (r, g, b, σ) — tiny-cuda-nn pads that output to 16, nfkit stores only the 4 used rows.
  The first layer has ``mlp_input_dim`` inputs: ``encoding_dim`` rounded up to a multiple of
  16 (:data:`TCNN_ALIGN`, tiny-cuda-nn's alignment); inputs encoding_dim..mlp_input_dim−1 of
  the first layer are the constant 1 (tiny-cuda-nn's padding); their weights act as the first
  layer's bias. The MLP layout is tiny-cuda-nn's, minus the output padding.

Positions are normalised to [0, 1]^3 over the object box before every encoding, as the
reference code does with nerfacc's AABB.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Literal

import numpy as np

from nfkit.errors import ConfigError

Family = Literal["mlp", "tri", "hash"]
FAMILIES: tuple[str, ...] = ("mlp", "tri", "hash")
OUT_DIM = 4  # r, g, b, sigma
TCNN_ALIGN = 16
"""tiny-cuda-nn pads an MLP's input (with the constant 1) and output to multiples of 16."""
HASH_FEATURES: tuple[int, ...] = (1, 2, 4, 8)
"""Features per hash-grid level that tiny-cuda-nn supports (``create_grid_encoding``)."""


def _libm():
    """The C library's maths functions (glibc's libm on Linux), or None where not loadable."""
    import ctypes
    import ctypes.util

    for name in (ctypes.util.find_library("m"), None):
        try:
            lib = ctypes.CDLL(name)
            for fn in (lib.log2f, lib.exp2f):
                fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
            return lib
        except (OSError, AttributeError):
            continue
    return None


_LIBM = _libm()


def host_log2f(x: float) -> np.float32:
    """``log2f(float(x))`` as tiny-cuda-nn's host code computes it (``std::log2`` of a float).

    Calls the C library's ``log2f``; where no C maths library can be loaded, the float64
    logarithm rounded to float32 (the correctly rounded value, which glibc's ``log2f`` returns
    except in rare halfway cases)."""
    x32 = np.float32(x)
    if _LIBM is not None:
        return np.float32(_LIBM.log2f(float(x32)))
    return np.float32(math.log2(float(x32)))


def host_exp2f(x: float) -> np.float32:
    """``exp2f(float(x))`` as tiny-cuda-nn's host code computes it (see :func:`host_log2f`)."""
    x32 = np.float32(x)
    if _LIBM is not None:
        return np.float32(_LIBM.exp2f(float(x32)))
    return np.float32(2.0 ** float(x32))


@dataclass(frozen=True)
class ArchSpec:
    """A NeRF architecture. Every field is a hyper-parameter; ``name`` is a label."""

    name: str
    family: str
    hidden_layers: int = 3
    """Number of hidden layers of the MLP (tiny-cuda-nn ``n_hidden_layers``)."""
    hidden_dim: int = 64
    activation: str = "relu"
    """``relu`` or ``sine`` (sin(x), as in the tri-plane reference)."""
    freq_bands: int = 0
    """Frequencies of the xyz frequency encoding (output 3·2·freq_bands); 0 = none."""
    tri_res: int = 32
    tri_channels: int = 16
    hash_levels: int = 4
    hash_log2_size: int = 12
    hash_features: int = 2
    hash_base_res: int = 16
    hash_per_level_scale: float = 2.0

    def __post_init__(self) -> None:
        self._check_types()
        if self.family not in FAMILIES:
            raise ConfigError(f"unknown architecture family {self.family!r}; expected one of {FAMILIES}")
        if self.activation not in ("relu", "sine"):
            raise ConfigError(f"unknown activation {self.activation!r}; expected 'relu' or 'sine'")
        if self.hidden_layers < 1 or self.hidden_dim < 1:
            raise ConfigError("hidden_layers and hidden_dim must be positive")
        if self.family == "hash" and self.freq_bands:
            raise ConfigError("the hash family feeds the grid output alone to the MLP (freq_bands must be 0)")
        if self.freq_bands < 0:
            raise ConfigError(f"freq_bands must be >= 0, got {self.freq_bands}")
        if self.tri_res < 2:
            raise ConfigError(f"tri_res must be >= 2 (align_corners sampling needs two texels), got {self.tri_res}")
        if self.tri_channels < 1:
            raise ConfigError(f"tri_channels must be >= 1, got {self.tri_channels}")
        if self.hash_levels < 1:
            raise ConfigError(f"hash_levels must be >= 1, got {self.hash_levels}")
        if self.hash_log2_size < 3:
            raise ConfigError(f"hash_log2_size must be >= 3 (levels are padded to multiples of 8 entries), got {self.hash_log2_size}")
        if self.hash_features not in HASH_FEATURES:
            raise ConfigError(f"hash_features must be one of {HASH_FEATURES} (tiny-cuda-nn), got {self.hash_features}")
        if self.hash_base_res < 1:
            raise ConfigError(f"hash_base_res must be >= 1, got {self.hash_base_res}")
        if not self.hash_per_level_scale >= 1.0:
            raise ConfigError(f"hash_per_level_scale must be >= 1, got {self.hash_per_level_scale}")

    def _check_types(self) -> None:
        """Integers must be integers (not 2.5, "wide" or true), the scale a number."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("str", str):
                ok = isinstance(value, str)
                want = "a string"
            elif f.type in ("int", int):
                ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
                want = "an integer"
            else:  # float
                ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
                want = "a number"
            if not ok:
                raise ConfigError(f"architecture field {f.name!r} must be {want}, got {value!r}")

    # ---------------------------------------------------------------- derived sizes
    @property
    def freq_dim(self) -> int:
        return 3 * 2 * self.freq_bands

    @property
    def hash_table_size(self) -> int:
        return 2**self.hash_log2_size

    def hash_level_scales(self) -> list[float]:
        """Per level, tiny-cuda-nn's float32 ``scale`` (``grid_scale`` in ``common_device.h``,
        used by ``GridEncodingTemplated`` in ``encodings/grid.h``):
        ``exp2f(level * log2(per_level_scale)) * base_resolution - 1.0f``, each operation rounded
        to float32 (returned as Python floats holding those float32 values).

        tcnn sizes its levels on the host, where ``std::log2(float)`` and ``exp2f`` are the C
        library's ``log2f`` / ``exp2f``; :func:`host_log2f` / :func:`host_exp2f` call the same
        functions (numpy's float32 ``log2`` / ``exp2`` differ from them by an ulp on some
        inputs, enough to change a resolution when the scale is not a power of two)."""
        f32 = np.float32
        log2_scale = host_log2f(self.hash_per_level_scale)
        base = f32(self.hash_base_res)
        return [
            float(f32(host_exp2f(f32(level) * log2_scale)) * base - f32(1.0)) for level in range(self.hash_levels)
        ]

    def hash_level_resolutions(self) -> list[int]:
        """Grid vertices per axis and level: ``ceilf(scale) + 1`` (``grid_resolution``)."""
        return [int(np.ceil(np.float32(scale))) + 1 for scale in self.hash_level_scales()]

    def hash_level_sizes(self) -> list[int]:
        """Entries per level, in tcnn's order: ``res^3`` (capped at 2^31 − 1, as tcnn caps it),
        rounded up to a multiple of 8, then at most T."""
        sizes = []
        for res in self.hash_level_resolutions():
            n = min(res**3, 2**31 - 1)
            sizes.append(min((n + 7) // 8 * 8, self.hash_table_size))
        return sizes

    @property
    def encoding_dim(self) -> int:
        """Width of the encoding (the MLP's inputs that vary with the position)."""
        if self.family == "mlp":
            return self.freq_dim
        if self.family == "tri":
            return self.tri_channels + self.freq_dim
        return self.hash_levels * self.hash_features

    @property
    def mlp_input_dim(self) -> int:
        """Width of the MLP input: ``encoding_dim`` rounded up to a multiple of
        :data:`TCNN_ALIGN`; the ``mlp_input_dim − encoding_dim`` extra inputs are 1."""
        return -(-self.encoding_dim // TCNN_ALIGN) * TCNN_ALIGN

    @property
    def n_input_padding(self) -> int:
        """Constant-1 padding inputs of the first layer (``mlp_input_dim − encoding_dim``)."""
        return self.mlp_input_dim - self.encoding_dim

    def mlp_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of each weight matrix ``mlp.{i}``; the first has ``mlp_input_dim`` inputs."""
        dims = [self.mlp_input_dim] + [self.hidden_dim] * self.hidden_layers + [OUT_DIM]
        return [(dims[i + 1], dims[i]) for i in range(len(dims) - 1)]

    def param_shapes(self) -> OrderedDict[str, tuple[int, ...]]:
        """Canonical parameter names and shapes, in storage order."""
        shapes: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        if self.family == "tri":
            shapes["triplane"] = (3, self.tri_channels, self.tri_res, self.tri_res)
        if self.family == "hash":
            shapes["hash_table"] = (sum(self.hash_level_sizes()) * self.hash_features,)
        for i, shape in enumerate(self.mlp_shapes()):
            shapes[f"mlp.{i}"] = shape
        return shapes

    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes().values())

    # ---------------------------------------------------------------- identity
    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def fingerprint(self) -> str:
        """Hash of the hyper-parameters (not the name): equal fingerprints = same layout."""
        d = self.to_dict()
        d.pop("name")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> ArchSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown architecture field(s): {', '.join(sorted(unknown))}")
        if "name" not in d or "family" not in d:
            raise ConfigError("an architecture spec needs at least 'name' and 'family'")
        return cls(**d)


def _registry() -> OrderedDict[str, ArchSpec]:
    mlp = ArchSpec("mlp", "mlp", activation="relu", freq_bands=24)
    tri = ArchSpec("tri", "tri", activation="sine", freq_bands=48)
    hsh = ArchSpec("hash", "hash", activation="relu")
    specs = [
        mlp,
        tri,
        hsh,
        replace(mlp, name="mlp-2l", hidden_layers=2),
        replace(mlp, name="mlp-32h", hidden_dim=32),
        replace(tri, name="tri-2l", hidden_layers=2),
        replace(tri, name="tri-32h", hidden_dim=32),
        replace(tri, name="tri-16w", tri_res=16),
        replace(tri, name="tri-8c", tri_channels=8),
        replace(hsh, name="hash-2l", hidden_layers=2),
        replace(hsh, name="hash-32h", hidden_dim=32),
        # HASH-3N keeps the per-level scale (2) of HASH: levels at 16, 32, 64.
        replace(hsh, name="hash-3n", hash_levels=3),
        replace(hsh, name="hash-11t", hash_log2_size=11),
    ]
    return OrderedDict((s.name, s) for s in specs)


REGISTRY: OrderedDict[str, ArchSpec] = _registry()
TRAINING_ARCHS: tuple[str, ...] = ("mlp", "tri", "hash")


def get_arch(name_or_path: str) -> ArchSpec:
    """Resolve a registered name (case-insensitive) or a JSON spec file."""
    key = name_or_path.lower()
    if key in REGISTRY:
        return REGISTRY[key]
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        return load_arch_file(path)
    raise ConfigError(
        f"unknown architecture {name_or_path!r}; choose one of {', '.join(REGISTRY)} "
        "or pass a .json spec file"
    )


def load_arch_file(path: Path) -> ArchSpec:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read architecture file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"architecture file {path} must hold a JSON object")
    try:
        return ArchSpec.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
