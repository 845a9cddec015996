"""Import NeRFs fitted with tiny-cuda-nn in the authors' reference layout (nf2vec / gmnerf).

Reference layout (``gmnerf/datasets/single_arch.py``, ``gmnerf/nf2vec/nerf/*.py``,
``nf2vec/nerf/loader.py``)::

    <root>/<class>/<object_id>/nerf_weights.pth     torch state dict of the radiance field
    <root>/../{train,val,test}.txt                   gmnerf split lists, "<class>/<object_id>"
    data/{train,validation,test}.json                nf2vec split lists (JSON lists of paths)

State-dict keys, by family (tensors fp32 or fp16):

- ``mlp_base.params``  flat tiny-cuda-nn MLP weights (``nfkit.nerf.tcnn_backend``), all families;
- ``triplane``         (3, R, R, C), channels last; the field samples ``permute(0, 3, 1, 2)``;
- ``encoding.params``  the hash table, already in the canonical layout.

Differences handled here: the reference tri-plane MLP sees [frequency ‖ tri-plane] while the
canonical order is [tri-plane ‖ frequency] (the first layer's columns are permuted); the
tri-plane is stored channels-last. tiny-cuda-nn pads the MLP input to a multiple of 16 with
the constant 1.0 (``tcnn.Network``'s Identity encoding appends the padding after the whole
input the network is given, i.e. after the reference's concatenation: tri-8c sees
[frequency 288 ‖ tri-plane 8 ‖ 1 × 8]); nfkit's canonical ``mlp.0`` keeps those columns
(``ArchSpec.mlp_input_dim``) at the same place, after the encoding: [tri-plane ‖ frequency ‖
1 … 1]. The import is therefore exact for every family (hash 8 -> 16 inputs, hash-3n 6 -> 16,
tri-8c 296 -> 304 included): only the permutation of the encoding's columns is applied.

tiny-cuda-nn's frequency encoding uses CUDA's fast ``__sinf`` (0 at the top frequencies), so
imported NeRFs record ``sin="tcnn"`` (``NerfRecord.sin``) and every consumer evaluates them
with ``field.forward(..., sin="tcnn")``. The other way, :func:`canonical_to_reference` of a
NeRF fitted by nfkit (``sin="exact"``) with a frequency encoding (MLP, TRI) is not exact:
tiny-cuda-nn would evaluate it with its fast sine, another function (it warns). Hash NeRFs
have no frequency encoding and convert exactly both ways.

HASH-3N's per-level scale is ambiguous in the reference (2.0 keeps levels 16/32/64; 2^1.5 =
2.828 keeps the finest level at 128; both have 24,576 table entries): ``per_level_scale``
overrides the spec's, and the imported spec (stored in the shard) records it.

Imported NeRFs record the init fingerprint of ``--init`` when it is given, else
:data:`UNKNOWN_INIT`: such NeRFs are not comparable with NeRFs of any known init.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nfkit.errors import ConfigError, IncompatibleError, NfkitError, UserError
from nfkit.io.artifacts import fingerprint_paths
from nfkit.io.lock import locks_output
from nfkit.io.shards import fresh_shard_path, plan_work, run_work
from nfkit.nerf import init as nerf_init
from nfkit.nerf.specs import ArchSpec
from nfkit.nerf.store import (
    NerfRecord,
    find_shards,
    nonfinite_params,
    read_nerf_shard,
    read_shard_spec,
    write_nerf_shard,
)
from nfkit.nerf.tcnn_backend import canonical_to_tcnn_mlp, tcnn_mlp_n_params, tcnn_mlp_to_canonical

__all__ = [
    "UNKNOWN_INIT",
    "WEIGHTS_FILE",
    "ImportReport",
    "ReferenceNerf",
    "canonical_to_reference",
    "find_reference_nerfs",
    "import_reference_nerfs",
    "load_reference_init",
    "read_reference_split_lists",
    "reference_to_canonical",
]

log = logging.getLogger(__name__)

WEIGHTS_FILE = "nerf_weights.pth"
UNKNOWN_INIT = "imported:unknown"
"""Init fingerprint of NeRFs imported without their init: comparable with nothing."""
UNLISTED = "unlisted"
"""Split of a NeRF absent from the split lists, or of every NeRF when there are none."""
_SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}
_KEY_MLP, _KEY_HASH, _KEY_TRI = "mlp_base.params", "encoding.params", "triplane"


# --------------------------------------------------------------------------- conversion
def _mlp_column_order(spec: ArchSpec) -> tuple[list[int], list[int]] | None:
    """For the tri family: canonical column ``i`` = reference column ``perm[i]`` and back.

    Reference first-layer columns: [freq (F) ‖ tri (C) ‖ padding (P)]; canonical:
    [tri (C) ‖ freq (F) ‖ padding (P)]. The padding columns stay in place (both put them
    after the encoding).
    """
    if spec.family != "tri" or not spec.freq_dim:
        return None
    c, f = spec.tri_channels, spec.freq_dim
    pad = list(range(c + f, spec.mlp_input_dim))
    to_canon = list(range(f, f + c)) + list(range(f)) + pad  # reference is [freq ‖ tri ‖ pad]
    to_ref = list(range(c, c + f)) + list(range(c)) + pad
    return to_canon, to_ref


def _tensor(state: Mapping, key: str, source: str) -> Tensor:
    if key not in state:  # also accept a module prefix, e.g. "radiance_field.mlp_base.params"
        matches = [k for k in state if str(k).endswith("." + key)]
        if len(matches) != 1:
            raise UserError(f"{source}: missing {key!r} (has {', '.join(sorted(map(str, state))) or 'no keys'})")
        key = matches[0]
    value = state[key]
    if not isinstance(value, Tensor):
        raise UserError(f"{source}: {key!r} is not a tensor")
    return value.detach().to(torch.float32).cpu()


def reference_to_canonical(
    spec: ArchSpec, state: Mapping[str, Tensor], source: str = "state dict"
) -> dict[str, np.ndarray]:
    """A reference state dict -> canonical params (exact: every weight is kept, the first
    layer's weights on tiny-cuda-nn's constant-1 padding inputs included).

    ValueError (naming ``source``) on missing keys or shapes that do not fit ``spec``.
    """
    flat = _tensor(state, _KEY_MLP, source).reshape(-1)
    n = tcnn_mlp_n_params(spec)
    if flat.numel() != n:
        raise UserError(
            f"{source}: {_KEY_MLP} has {flat.numel()} values, architecture {spec.name!r} expects {n}"
        )
    params = tcnn_mlp_to_canonical(spec, flat)
    order = _mlp_column_order(spec)
    if order is not None:
        params["mlp.0"] = params["mlp.0"][:, order[0]]
    shapes = spec.param_shapes()
    if spec.family == "tri":
        tri = _tensor(state, _KEY_TRI, source)
        _, c, r, _ = shapes["triplane"]
        if tuple(tri.shape) != (3, r, r, c):
            raise UserError(
                f"{source}: {_KEY_TRI} has shape {tuple(tri.shape)}, architecture {spec.name!r} "
                f"expects {(3, r, r, c)} (planes, R, R, channels)"
            )
        params["triplane"] = tri.permute(0, 3, 1, 2)
    if spec.family == "hash":
        table = _tensor(state, _KEY_HASH, source).reshape(-1)
        if table.numel() != shapes["hash_table"][0]:
            raise UserError(
                f"{source}: {_KEY_HASH} has {table.numel()} values, architecture {spec.name!r} "
                f"expects {shapes['hash_table'][0]}"
            )
        params["hash_table"] = table
    return {name: np.ascontiguousarray(params[name].numpy(), dtype=np.float32) for name in shapes}


def export_is_exact(spec: ArchSpec, sin: str) -> bool:
    """Whether tiny-cuda-nn evaluates exported weights as the same function: true unless the
    architecture has a frequency encoding and its weights were trained with the exact sine."""
    return not (spec.freq_bands and sin != "tcnn")


def canonical_to_reference(
    spec: ArchSpec, params: Mapping[str, np.ndarray | Tensor], sin: str = "exact"
) -> dict[str, Tensor]:
    """Canonical params -> a reference state dict (the exact inverse of
    :func:`reference_to_canonical`; tiny-cuda-nn's unused output padding rows are zero).

    ``sin`` is the sine the weights were trained with (``NerfRecord.sin``). The layout is
    always exact, but for ``sin="exact"`` and an architecture with a frequency encoding (MLP,
    TRI) tiny-cuda-nn's fast sine makes the exported network another function: a warning
    says so (:func:`export_is_exact`).
    """
    if not export_is_exact(spec, sin):
        log.warning(
            "%s: exported to tiny-cuda-nn's layout, but NOT the same function: these weights were "
            "trained with the exact sine and tiny-cuda-nn evaluates its frequency encoding with its "
            "fast __sinf (different in the high frequencies)", spec.name,
        )
    t = {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in params.items()}
    mlp = {k: v for k, v in t.items() if k.startswith("mlp.")}
    order = _mlp_column_order(spec)
    if order is not None:
        mlp["mlp.0"] = mlp["mlp.0"][:, order[1]]
    state = {_KEY_MLP: canonical_to_tcnn_mlp(spec, mlp)}
    if spec.family == "tri":
        state[_KEY_TRI] = t["triplane"].permute(0, 2, 3, 1).contiguous()
    if spec.family == "hash":
        state[_KEY_HASH] = t["hash_table"].clone()
    return state


def with_per_level_scale(spec: ArchSpec, per_level_scale: float | None) -> ArchSpec:
    """``spec`` with the hash grid's per-level scale the imported NeRFs were trained with.

    The weights do not tell (HASH-3N has 24,576 entries at scale 2.0 and at 2.828), so the
    user says it; the spec stored in the shards then records it. ``None`` keeps ``spec``'s.
    ValueError for a non-hash spec, or a scale that changes the number of parameters.
    """
    from dataclasses import replace

    if per_level_scale is None:
        return spec
    if spec.family != "hash":
        raise ConfigError(f"--per-level-scale applies to hash architectures only, not {spec.name!r} ({spec.family})")
    if not math.isfinite(per_level_scale) or per_level_scale < 1.0:
        raise ConfigError(f"--per-level-scale must be a finite number >= 1, got {per_level_scale}")
    if per_level_scale == spec.hash_per_level_scale:
        return spec
    other = replace(spec, hash_per_level_scale=float(per_level_scale))
    if other.n_params() != spec.n_params():
        log.info(
            "%s at per-level scale %s has %d parameters (%d at %s)",
            spec.name, per_level_scale, other.n_params(), spec.n_params(), spec.hash_per_level_scale,
        )
    return other


def load_state(path: Path) -> Mapping[str, Tensor]:
    """``torch.load`` of a reference weights file, safely (tensors only), on the CPU.

    Raises :class:`UserError` (one line, naming the file) for anything that is not a torch
    file of tensors: a text file, a truncated or corrupt file, a pickle of other objects.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc.__class__.__name__})") from None
    # torch.save writes a zip archive (PK..) since torch 1.6, a raw pickle (protocol 2+: 0x80) before
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise UserError(f"{path}: not a readable torch weights file (neither a torch zip archive nor a pickle)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{path}: not a readable torch weights file (not a torch file, or it holds objects "
            "other than tensors; it is loaded with weights_only=True)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        # the weights-only unpickler reports a malformed stream with whatever error it hits
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise UserError(f"{path}: not a readable torch weights file ({exc.__class__.__name__}: {msg[:120]})") from None
    if not isinstance(state, Mapping):
        raise UserError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


# --------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class ReferenceNerf:
    """One reference weights file and what its folders say about it."""

    path: Path
    class_folder: str
    object_id: str
    split: str


def _split_name(stem: str) -> str | None:
    return _SPLIT_NAMES.get(stem.lower())


def read_reference_split_lists(folder: Path) -> dict[str, str]:
    """``<class>/<object_id>`` (and bare ``<object_id>``) -> split, from split lists in ``folder``.

    Reads gmnerf's ``{train,val,test}.txt`` (one relative path per line) and nf2vec's
    ``{train,validation,test}.json`` (a JSON list of paths); only the last two components of
    each path are used.
    """
    result: dict[str, str] = {}
    if not folder.is_dir():
        return result
    for file in sorted(folder.iterdir()):
        split = _split_name(file.stem)
        if split is None or file.suffix not in (".txt", ".json"):
            continue
        try:
            text = file.read_text()
            items = json.loads(text) if file.suffix == ".json" else text.splitlines()
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{file}: unreadable split list ({exc.__class__.__name__})") from None
        if not isinstance(items, list):
            raise UserError(f"{file}: a split list must be a JSON list of paths")
        for item in items:
            parts = [p for p in str(item).split("#", 1)[0].strip().replace("\\", "/").split("/") if p not in ("", ".")]
            if not parts:
                continue
            result.setdefault(parts[-1], split)
            if len(parts) >= 2:
                result["/".join(parts[-2:])] = split
    return result


def find_reference_nerfs(root: str | Path, splits_dir: str | Path | None = None) -> list[ReferenceNerf]:
    """Every ``nerf_weights.pth`` under ``root`` (recursively), sorted, with class, id, split.

    Class folder = the weights file's grandparent folder name, object id = its parent's.
    Split lists are read from ``splits_dir`` if given, else from ``root``, ``root/splits`` and
    ``root``'s parent (gmnerf keeps them beside the per-architecture folders).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    if splits_dir is not None:
        if not Path(splits_dir).is_dir():
            raise FileNotFoundError(f"{splits_dir}: no such split-list folder")
        lists = read_reference_split_lists(Path(splits_dir))
    else:
        lists = {}
        for folder in (root.parent, root / "splits", root):  # later folders win
            lists.update(read_reference_split_lists(folder))
    found = []
    for path in sorted(root.rglob(WEIGHTS_FILE)):
        if not path.is_file():
            continue
        cls, obj = path.parent.parent.name, path.parent.name
        split = lists.get(f"{cls}/{obj}", lists.get(obj, UNLISTED))
        found.append(ReferenceNerf(path, cls, obj, split))
    return found


# --------------------------------------------------------------------------- import
@dataclass
class ImportReport:
    """What :func:`import_reference_nerfs` did."""

    found: int = 0
    imported: int = 0
    skipped: int = 0
    """NeRFs in shards that already existed (a previous run)."""
    failed: list[tuple[Path, str]] = field(default_factory=list)
    shards: list[Path] = field(default_factory=list)
    init_fingerprint: str = UNKNOWN_INIT


def load_reference_init(path: str | Path, spec: ArchSpec, out_dir: str | Path | None = None) -> nerf_init.NerfInit:
    """The shared init the imported NeRFs came from.

    ``path`` is an nfkit ``nerf-init`` artifact (``.h5``) or a reference-layout weights file
    holding the initial weights (converted, and saved as ``<out_dir>/<arch>.init.h5`` when
    ``out_dir`` is given). ValueError if it belongs to another architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such init file")
    if path.suffix in (".h5", ".hdf5"):
        init = nerf_init.load_init(path)
        nerf_init.check_init_matches(init, spec)
        return init
    params = reference_to_canonical(spec, load_state(path), source=str(path))
    init = nerf_init.from_params(spec, params)
    if out_dir is not None:
        nerf_init.save_init(init, nerf_init.init_path(spec, out_dir))
    return init


def shard_prefix(spec: ArchSpec) -> str:
    """Output shards are ``<arch>-imported-<fingerprint of their files>.h5``."""
    return f"{spec.name}-imported"


def imported_sources(out_dir: Path, spec: ArchSpec, init_fp: str) -> set[str]:
    """Source files of the NeRFs of ``spec`` already imported into ``out_dir`` (shards of other
    architectures are left alone); refuses shards of ``spec`` from another init."""
    done: set[str] = set()
    if not out_dir.is_dir():
        return done
    for shard in find_shards(out_dir):
        got_spec, got_init, _ = read_shard_spec(shard)
        if got_spec.fingerprint() != spec.fingerprint():
            continue
        if got_init != init_fp:
            raise IncompatibleError(f"{shard} holds NeRFs of init {got_init}, not {init_fp}; use another --out")
        done.update(r.source for r in read_nerf_shard(shard, load_params=False))
    return done


@locks_output("out_dir")
def import_reference_nerfs(
    root: str | Path,
    spec: ArchSpec,
    out_dir: str | Path,
    init: nerf_init.NerfInit | None = None,
    splits_dir: str | Path | None = None,
    shard_size: int = 256,
    progress: bool = False,
) -> ImportReport:
    """Convert every reference NeRF under ``root`` to NeRF shards in ``out_dir``.

    Files are processed in sorted order, ``shard_size`` per shard; files already imported
    into ``out_dir`` (by source path, read from its shards of this architecture) are skipped,
    so a rerun resumes whatever ``--shard-size`` was. A file that cannot be read or does not
    fit ``spec`` is reported in ``ImportReport.failed`` (one line, naming the file) and the
    others are imported. Each shard records the content fingerprints of its files.
    """
    if shard_size < 1:
        raise ConfigError("shard_size must be >= 1")
    if init is not None:
        nerf_init.check_init_matches(init, spec)
    init_fp = init.fingerprint if init is not None else UNKNOWN_INIT
    refs = find_reference_nerfs(root, splits_dir)
    if not refs:
        raise FileNotFoundError(f"{root}: no {WEIGHTS_FILE} files found")
    out_dir = Path(out_dir)
    plan = plan_work(refs, lambda r: str(r.path), imported_sources(out_dir, spec, init_fp), batch_size=shard_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ImportReport(found=len(refs), init_fingerprint=init_fp, skipped=plan.skipped)
    config = {
        "imported_from": str(Path(root).resolve()),
        "arch": spec.name,
        "format": "tiny-cuda-nn reference (nf2vec/gmnerf nerf_weights.pth)",
        "sin": "tcnn",
    }
    if spec.family == "hash":
        config["hash_per_level_scale"] = spec.hash_per_level_scale

    def convert_and_write(chunk: list[ReferenceNerf]) -> Path | None:
        records = [r for r in (_convert(ref, spec, init_fp, report) for ref in chunk) if r is not None]
        if not records:
            return None
        files = [Path(r.source) for r in records]
        path = fresh_shard_path(out_dir, [r.source for r in records], prefix=shard_prefix(spec))
        write_nerf_shard(
            path, records, config=config,
            inputs={"init": init_fp, "weights": fingerprint_paths(files)}, input_paths={"weights": files},
        )
        report.imported += len(records)
        return path

    for _chunk, path in run_work(plan, convert_and_write, progress=progress, desc=f"import {spec.name}", unit="nerf"):
        if path is not None:
            report.shards.append(path)
    return report


def _convert(ref: ReferenceNerf, spec: ArchSpec, init_fp: str, report: ImportReport) -> NerfRecord | None:
    from nfkit.data.classes import class_name

    try:
        params = reference_to_canonical(spec, load_state(ref.path), source=str(ref.path))
    except (ValueError, NfkitError) as exc:
        report.failed.append((ref.path, str(exc).strip().splitlines()[0]))
        log.debug("skipping %s: %s", ref.path, exc)
        return None
    bad = nonfinite_params(params)
    if bad:
        report.failed.append(
            (ref.path, f"{ref.path}: NeRF {ref.class_folder}/{ref.object_id} has non-finite weights (NaN or inf in {', '.join(bad)})")
        )
        return None
    return NerfRecord(
        object_id=ref.object_id,
        class_name=class_name(ref.class_folder),
        split=ref.split,
        arch=spec,
        init_fingerprint=init_fp,
        params=params,
        psnr=math.nan,
        fit_seconds=math.nan,
        source=str(ref.path),
        sin="tcnn",
    )
