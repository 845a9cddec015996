"""NeRF shards: many fitted NeRFs of one architecture in one HDF5 artifact.

Layout (kind ``nerf-shard``, schema v1; documented in ``data_specs/nerf-shard-v1.md``)::

    /                       root attrs: nfkit_* header, arch_spec (JSON), arch_fingerprint,
                                        init_fingerprint, count, sin ("exact" or "tcnn";
                                        absent in older shards: "exact")
    /params/<name>          float32 (N, *shape) for every canonical parameter of the spec
    /meta/object_id         str (N,)
    /meta/class_name        str (N,)
    /meta/split             str (N,)
    /meta/psnr              float32 (N,)   held-out PSNR in dB (NaN when not evaluated)
    /meta/fit_seconds       float32 (N,)
    /meta/source            str (N,)       where the NeRF came from (dataset folder, file)
    /meta/psnr_on           str (N,)       which views the PSNR was measured on: "test-views"
                                           (the object's transforms_test.json),
                                           "held-out-train-views" (every N-th training view,
                                           not trained on) or "" (not evaluated; older shards)

A shard is written once, atomically, when the NeRFs it holds are complete.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from nfkit.io.artifacts import (
    ArtifactError,
    array_checksum,
    check_checksum,
    find_h5_files,
    open_artifact,
    read_checked,
    register_reader,
    stored_checksum,
    write_artifact,
)
from nfkit.nerf.specs import ArchSpec

NERF_SHARD = "nerf-shard"
NERF_SHARD_VERSION = 1

_STR = h5py.string_dtype("utf-8")
_META_STR = ("object_id", "class_name", "split", "source")
_META_OPTIONAL_STR = ("psnr_on",)  # absent in shards written before it existed: ""
PSNR_ON = {
    "test-views": "the object's transforms_test.json views",
    "held-out-train-views": "held-out training views (every eval_every-th, not trained on)",
    "": "not evaluated",
}
"""Values of ``NerfRecord.psnr_on`` and what they mean."""
_META_FLOAT = ("psnr", "fit_seconds")

SINES: tuple[str, ...] = ("exact", "tcnn")
"""How a NeRF's frequency encoding evaluates the sine its weights were trained with:
``exact`` (``torch.sin``; every NeRF nfkit fits) or ``tcnn`` (tiny-cuda-nn's fast ``__sinf``;
NeRFs imported from tiny-cuda-nn). Pass it as ``field.forward(..., sin=record.sin)``."""
DEFAULT_SINE = "exact"
"""The sine of shards written before the ``sin`` attribute existed (all were nfkit fits)."""


def check_sine(sin: str) -> str:
    if sin not in SINES:
        raise ValueError(f"unknown sine {sin!r}; expected one of {', '.join(SINES)}")
    return sin


@dataclass
class NerfRecord:
    """One NeRF: its architecture, weights in the canonical layout, and metadata."""

    object_id: str
    class_name: str
    split: str
    arch: ArchSpec
    init_fingerprint: str
    params: dict[str, np.ndarray]
    psnr: float = math.nan
    fit_seconds: float = math.nan
    source: str = ""
    psnr_on: str = ""
    """Which views ``psnr`` was measured on (a key of :data:`PSNR_ON`)."""
    sin: str = DEFAULT_SINE
    """The sine the weights were trained with (:data:`SINES`); every consumer evaluates the
    NeRF with it: ``nfkit.nerf.field.forward(spec, params, x, sin=record.sin)``."""
    shard: Path | None = field(default=None, compare=False)
    index: int = field(default=-1, compare=False)

    @property
    def key(self) -> str:
        """Unique within one architecture: ``class/object_id``."""
        return f"{self.class_name}/{self.object_id}"


def check_params(spec: ArchSpec, params: Mapping[str, np.ndarray], batched: bool) -> None:
    """Raise ValueError unless ``params`` holds exactly the canonical tensors of ``spec``."""
    shapes = spec.param_shapes()
    if set(params) != set(shapes):
        raise ValueError(
            f"parameters {sorted(params)} do not match architecture {spec.name!r} "
            f"(expected {sorted(shapes)})"
        )
    for name, shape in shapes.items():
        got = tuple(params[name].shape[1:] if batched else params[name].shape)
        if got != tuple(shape):
            raise ValueError(f"{spec.name}: parameter {name!r} has shape {got}, expected {shape}")


def nonfinite_params(params: Mapping[str, np.ndarray]) -> list[str]:
    """Names of the parameters holding NaN or inf (a diverged fit, a corrupt import)."""
    return [name for name, value in params.items() if not np.isfinite(np.asarray(value)).all()]


def check_finite(key: str, params: Mapping[str, np.ndarray], where: str = "") -> None:
    """Refuse a NeRF with NaN or inf weights with a one-line :class:`ArtifactError` naming it."""
    bad = nonfinite_params(params)
    if bad:
        prefix = f"{where}: " if where else ""
        raise ArtifactError(f"{prefix}NeRF {key} has non-finite weights (NaN or inf in {', '.join(bad)})")


def write_nerf_shard(
    path: str | Path,
    records: Sequence[NerfRecord],
    config: dict | None = None,
    inputs: dict[str, str] | None = None,
    input_paths: Mapping[str, Sequence[str | Path]] | None = None,
) -> Path:
    """Write NeRFs (all of one architecture and init) to ``path`` atomically (``inputs`` /
    ``input_paths`` as :func:`nfkit.io.artifacts.write_artifact`)."""
    if not records:
        raise ValueError("no NeRFs to write")
    spec = records[0].arch
    init_fp = records[0].init_fingerprint
    sin = check_sine(records[0].sin)
    for r in records:
        if r.sin != sin:
            raise ValueError("a NeRF shard holds NeRFs of one sine only (exact or tcnn)")
        if r.arch.fingerprint() != spec.fingerprint():
            raise ValueError("a NeRF shard holds one architecture only")
        if r.init_fingerprint != init_fp:
            raise ValueError("a NeRF shard holds NeRFs of one initialization only")
        check_params(spec, r.params, batched=False)
        check_finite(r.key, r.params, str(path))
    inputs = dict(inputs or {})
    inputs.setdefault("init", init_fp)
    with write_artifact(
        path, NERF_SHARD, NERF_SHARD_VERSION, config=config, inputs=inputs, input_paths=input_paths
    ) as f:
        f.attrs["arch_spec"] = spec.to_json()
        f.attrs["arch_fingerprint"] = spec.fingerprint()
        f.attrs["init_fingerprint"] = init_fp
        f.attrs["count"] = len(records)
        f.attrs["sin"] = sin
        g = f.create_group("params")
        for name in spec.param_shapes():
            stacked = np.stack([np.asarray(r.params[name], dtype=np.float32) for r in records])
            g.create_dataset(name, data=stacked)
        m = f.create_group("meta")
        for key in _META_STR + _META_OPTIONAL_STR:
            m.create_dataset(key, data=[str(getattr(r, key)) for r in records], dtype=_STR)
        for key in _META_FLOAT:
            m.create_dataset(key, data=np.array([getattr(r, key) for r in records], np.float32))
    return Path(path)


def _decode(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def shard_sine(path: str | Path) -> str:
    """The sine a shard's NeRFs were trained with (``exact`` for shards without the attribute)."""
    with open_artifact(path, NERF_SHARD) as f:
        return _sine(f, Path(path))


def _sine(f: h5py.File, path: Path) -> str:
    value = f.attrs.get("sin", DEFAULT_SINE)
    value = value.decode() if isinstance(value, bytes) else str(value)
    if value not in SINES:
        raise ArtifactError(f"{path}: unknown sine {value!r} (this nfkit knows {', '.join(SINES)})")
    return value


def read_shard_spec(path: str | Path) -> tuple[ArchSpec, str, int]:
    """(architecture, init fingerprint, count) of a shard, without reading weights."""
    with open_artifact(path, NERF_SHARD) as f:
        return _header(f, Path(path))


def _header(f: h5py.File, path: Path) -> tuple[ArchSpec, str, int]:
    try:
        spec = ArchSpec.from_dict(json.loads(f.attrs["arch_spec"]))
        return spec, str(f.attrs["init_fingerprint"]), int(f.attrs["count"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{path}: malformed NeRF shard header ({exc})") from None


def read_nerf_shard(path: str | Path, load_params: bool = True) -> list[NerfRecord]:
    """All NeRFs of a shard; raises ArtifactError on a corrupt or inconsistent file, or (with
    ``load_params``) when a NeRF's weights hold NaN or inf (the message names the NeRF)."""
    path = Path(path)
    with open_artifact(path, NERF_SHARD) as f:
        spec, init_fp, count = _header(f, path)
        sin = _sine(f, path)
        try:
            meta = {k: _decode(read_checked(f["meta"][k], path)) for k in _META_STR}
            for k in _META_OPTIONAL_STR:
                meta[k] = _decode(read_checked(f["meta"][k], path)) if k in f["meta"] else [""] * count
            meta.update({k: read_checked(f["meta"][k], path).astype(float).tolist() for k in _META_FLOAT})
            params: dict[str, np.ndarray] = {}
            sums: dict[str, tuple[int | None, str]] = {}
            if load_params:
                for name, shape in spec.param_shapes().items():
                    ds = f["params"][name]
                    arr = ds[()]  # its checksum is checked below, after the clearer NaN check
                    sums[name] = (stored_checksum(ds), ds.name)
                    if arr.shape != (count, *shape):
                        raise ArtifactError(
                            f"{path}: parameter {name!r} has shape {arr.shape}, "
                            f"expected {(count, *shape)} for architecture {spec.name!r}"
                        )
                    params[name] = arr
        except KeyError as exc:
            raise ArtifactError(f"{path}: malformed NeRF shard (missing {exc})") from None
        except OSError as exc:
            raise ArtifactError(f"{path}: corrupt NeRF shard ({exc.__class__.__name__})") from None
    if any(len(v) != count for v in meta.values()):
        raise ArtifactError(f"{path}: metadata length does not match count={count}")
    for name, arr in params.items():
        bad = ~np.isfinite(arr.reshape(count, -1)).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            check_finite(f"{meta['class_name'][i]}/{meta['object_id'][i]}", {name: arr[i]}, str(path))
    for name, (crc, ds_name) in sums.items():
        check_checksum(array_checksum(params[name]), crc, path, ds_name)
    return [
        NerfRecord(
            object_id=meta["object_id"][i],
            class_name=meta["class_name"][i],
            split=meta["split"][i],
            arch=spec,
            init_fingerprint=init_fp,
            params={k: v[i] for k, v in params.items()},
            psnr=meta["psnr"][i],
            fit_seconds=meta["fit_seconds"][i],
            source=meta["source"][i],
            psnr_on=meta["psnr_on"][i],
            sin=sin,
            shard=path,
            index=i,
        )
        for i in range(count)
    ]


def find_shards(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Shard files under the given files/folders (recursively, ``*.h5``), sorted."""
    return find_h5_files(paths, kind=NERF_SHARD)


def iter_nerfs(paths: str | Path | Iterable[str | Path], load_params: bool = True) -> Iterator[NerfRecord]:
    for shard in find_shards(paths):
        yield from read_nerf_shard(shard, load_params=load_params)


register_reader(NERF_SHARD, NERF_SHARD_VERSION, read_nerf_shard)
