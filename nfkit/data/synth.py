"""Procedural stand-in for ShapenetRender: same layout, classes and camera protocol (SPEC §2).

``generate_dataset(out, SynthConfig(...))`` writes::

    out/dataset.json                     generator, version, config, classes, counts
    out/splits/{train,val,test}.txt      one "<synset>/<object_id>" per line
    out/<synset>/<object_id>/transforms_train.json
    out/<synset>/<object_id>/train/00.png ... 35.png     RGBA 8-bit, alpha = exact mask
    out/<synset>/<object_id>/meta.json   bounding box, an interior point, the parts

Each object is assembled from primitives by its class builder (:mod:`nfkit.data.shapes`),
normalised so its bounding box is centred on the origin with longest side ``max_extent``
(inside SPEC's [-0.7, 0.7]^3), and rendered exactly by ray casting (:mod:`nfkit.data.raycast`)
from cameras on the upper hemisphere looking at the origin: a full turn around the vertical
axis with random elevation and distance (seed 001 §3.1). See data_specs/dataset-layout.md.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from nfkit import __version__
from nfkit.data.cameras import focal_from_angle, look_at, orbit_eyes
from nfkit.data.classes import SYNSET_TO_NAME, SYNSETS, resolve_classes
from nfkit.data.primitives import Part, deform, interior_point, normalize, object_bounds, recolor
from nfkit.data.raycast import render_views
from nfkit.data.shapes import BUILDERS
from nfkit.errors import ConfigError, UserError
from nfkit.io.artifacts import check_output_dir, sigterm_cleans_up
from nfkit.io.lock import folder_lock

log = logging.getLogger(__name__)

DATASET_FORMAT = "nfkit-synth"
OBJECT_FORMAT = "nfkit-synth-object"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")


@dataclass
class SynthConfig:
    """Parameters of the procedural dataset (all are written to ``dataset.json``)."""

    resolution: int = 224
    """Image width and height in pixels (ShapenetRender: 224)."""
    objects_per_class: int = 10
    """Objects generated per class, before augmentation."""
    views: int = 36
    """Views per object (ShapenetRender: 36)."""
    classes: tuple[str, ...] = SYNSETS
    """Class names or ShapeNet synset ids; stored as synset ids."""
    augment: int = 0
    """Extra copies per object with a random smooth deformation and new part colours."""
    seed: int = 0
    """Master seed; the same seed gives byte-identical files."""
    val_fraction: float = 0.1
    """Fraction of each class's objects listed in splits/val.txt."""
    test_fraction: float = 0.1
    """Fraction of each class's objects listed in splits/test.txt."""
    camera_angle_x: float = 0.8
    """Horizontal field of view in radians."""
    distance: tuple[float, float] = (1.05, 1.4)
    """Range of camera distances to the origin, relative to the closest distance at which the
    object's bounding sphere (centred on the origin) still fits in the field of view."""
    elevation_deg: tuple[float, float] = (5.0, 55.0)
    """Range of camera elevations above the horizontal plane, degrees (upper hemisphere)."""
    max_extent: float = 1.25
    """Longest side of each object's bounding box (SPEC's box is [-0.7, 0.7]^3)."""

    def __post_init__(self) -> None:
        self.classes = tuple(resolve_classes(list(self.classes)))
        self.distance = tuple(float(x) for x in self.distance)
        self.elevation_deg = tuple(float(x) for x in self.elevation_deg)

    def validate(self) -> None:
        """Raise ``ValueError`` with a one-line message on an impossible setting."""
        if not 8 <= self.resolution <= 4096:
            raise ConfigError(f"--resolution must be between 8 and 4096, got {self.resolution}")
        if self.objects_per_class < 1:
            raise ConfigError(f"--objects-per-class must be >= 1, got {self.objects_per_class}")
        if self.views < 1:
            raise ConfigError(f"--views must be >= 1, got {self.views}")
        if self.augment < 0:
            raise ConfigError(f"--augment must be >= 0, got {self.augment}")
        for name, frac in (
            ("--val-fraction", self.val_fraction),
            ("--test-fraction", self.test_fraction),
        ):
            if not 0.0 <= frac < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {frac}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                "--val-fraction + --test-fraction must be < 1 (train must not be empty)"
            )
        lo, hi = self.distance
        el_lo, el_hi = self.elevation_deg
        if not 1.0 <= lo <= hi:
            raise ConfigError(
                f"relative camera distance range must satisfy 1 <= lo <= hi, got {self.distance}"
            )
        if not -90 < el_lo <= el_hi < 90:
            raise ConfigError(
                f"elevation range must lie in (-90, 90) degrees, got {self.elevation_deg}"
            )
        if not 0 < self.max_extent <= 1.4:
            raise ConfigError(f"max_extent must be in (0, 1.4], got {self.max_extent}")
        if not 0.05 < self.camera_angle_x < 3.0:
            raise ConfigError(
                f"camera_angle_x must be in (0.05, 3.0) radians, got {self.camera_angle_x}"
            )


@dataclass
class SynthSummary:
    """What :func:`generate_dataset` wrote."""

    root: Path
    n_objects: int
    n_augmented: int
    per_class: dict[str, int]
    per_split: dict[str, int]
    seconds: float
    seconds_per_object: float
    render_seconds_per_object: float
    preview: Path | None = None
    config: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- objects


def object_id(synset: str, index: int, augmentation: int = 0) -> str:
    """``<class name>_<index:04d>``; augmented copies get ``_A<k>``."""
    base = f"{SYNSET_TO_NAME[synset]}_{index:04d}"
    return base if augmentation == 0 else f"{base}_A{augmentation}"


def make_object(
    synset: str, index: int, seed: int, augmentation: int = 0, max_extent: float = 1.25
) -> list[Part]:
    """Build one object: the class builder with a per-object seed; for ``augmentation`` k > 0
    the same base object deformed and recoloured with seed k; then normalised."""
    parts = BUILDERS[synset](np.random.default_rng([seed, int(synset), index]))
    if augmentation > 0:
        rng = np.random.default_rng([seed, int(synset), index, augmentation, 3])
        parts = recolor(deform(parts, rng), rng)
    return normalize(parts, max_extent)


def fit_distance(radius: float, camera_angle_x: float) -> float:
    """Closest camera distance at which a sphere of ``radius`` around the look-at point fits in
    the (square) field of view: ``radius / sin(camera_angle_x / 2)``."""
    return radius / math.sin(camera_angle_x / 2)


def sample_cameras(rng: np.random.Generator, config: SynthConfig, radius: float) -> np.ndarray:
    """(V, 4, 4) camera-to-world matrices looking at the origin: one full turn around +y (random
    start, jittered steps), random elevation, and a random distance in ``config.distance`` times
    :func:`fit_distance` of the object's bounding ``radius``, so no view cuts the object off."""
    v = config.views
    azimuth = (rng.uniform(0, 1) + np.arange(v) + rng.uniform(-0.25, 0.25, v)) * (2 * np.pi / v)
    elevation = np.deg2rad(rng.uniform(*config.elevation_deg, v))
    distance = rng.uniform(*config.distance, v) * fit_distance(radius, config.camera_angle_x)
    return look_at(orbit_eyes(azimuth, elevation, distance))


def object_meta(parts: list[Part], synset: str, oid: str, source: str, augmentation: int) -> dict:
    lo, hi = object_bounds(parts)
    return {
        "format": OBJECT_FORMAT,
        "version": FORMAT_VERSION,
        "object_id": oid,
        "synset": synset,
        "class": SYNSET_TO_NAME[synset],
        "source_id": source,
        "augmentation": augmentation,
        "bbox_min": np.round(lo, 6).tolist(),
        "bbox_max": np.round(hi, 6).tolist(),
        "center": np.round((lo + hi) / 2, 6).tolist(),
        "interior_point": np.round(interior_point(parts), 6).tolist(),
        "parts": [p.to_json() for p in parts],
    }


def write_object(
    folder: Path, rgba: np.ndarray, c2w: np.ndarray, camera_angle_x: float, meta: dict
) -> None:
    """Write ``transforms_train.json``, ``train/NN.png`` and ``meta.json`` into ``folder``."""
    (folder / "train").mkdir(parents=True)
    digits = max(2, len(str(len(rgba) - 1)))
    frames = []
    for i, (image, pose) in enumerate(zip(rgba, c2w, strict=True)):
        name = f"{i:0{digits}d}"
        Image.fromarray(image).save(folder / "train" / f"{name}.png")
        frames.append(
            {"file_path": f"./train/{name}", "transform_matrix": np.round(pose, 8).tolist()}
        )
    transforms = {"camera_angle_x": camera_angle_x, "frames": frames}
    (folder / "transforms_train.json").write_text(json.dumps(transforms, indent=1))
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


# ----------------------------------------------------------------------------- splits


def split_indices(
    n: int, rng: np.random.Generator, val_fraction: float, test_fraction: float
) -> dict[str, list[int]]:
    """Shuffle ``range(n)`` and cut it into train/val/test; train always gets >= 1 object."""
    order = rng.permutation(n).tolist()
    n_test, n_val = round(test_fraction * n), round(val_fraction * n)
    while n - n_val - n_test < 1:
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return {
        "test": sorted(order[:n_test]),
        "val": sorted(order[n_test : n_test + n_val]),
        "train": sorted(order[n_test + n_val :]),
    }


# ----------------------------------------------------------------------------- output folder


def _check_output(out: Path, overwrite: bool) -> None:
    from nfkit.errors import UserError
    from nfkit.io.artifacts import check_output_dir

    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    check_output_dir(out.parent, "output folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} already exists and is not empty; pass --overwrite to replace it"
            )
        info = out / "dataset.json"
        try:
            ours = json.loads(info.read_text()).get("format") == DATASET_FORMAT
        except (OSError, ValueError):
            ours = False
        if not ours:
            raise FileExistsError(
                f"refusing to overwrite {out}: it is not a dataset written by nfkit synth"
            )


def _install(tmp: Path, out: Path) -> None:
    """Move the finished dataset into place (replacing an old one)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


# ----------------------------------------------------------------------------- preview


def write_preview(rows: dict[str, np.ndarray], path: Path, background=(235, 235, 235)) -> None:
    """Contact sheet: one row per class, the class name then a few views.

    Args:
        rows: synset -> (K, H, W, 4) uint8 RGBA views of one object.
        path: PNG file to write.
    """
    if not rows:
        raise ValueError("nothing to preview")
    k, h, w = next(iter(rows.values())).shape[:3]
    label_w, pad = max(96, w), 4
    sheet = Image.new(
        "RGB", (label_w + k * (w + pad) + pad, len(rows) * (h + pad) + pad), background
    )
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(11, h // 7))
    for r, (synset, views) in enumerate(rows.items()):
        y = pad + r * (h + pad)
        draw.text(
            (pad, y + h // 2 - h // 12),
            SYNSET_TO_NAME.get(synset, synset),
            fill=(0, 0, 0),
            font=font,
        )
        for c, view in enumerate(views):
            tile = Image.new("RGBA", (w, h), background + (255,))
            tile.alpha_composite(Image.fromarray(view))
            sheet.paste(tile.convert("RGB"), (label_w + c * (w + pad), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


# ----------------------------------------------------------------------------- driver


def _generate_class(
    synset: str, config: SynthConfig, folder: Path, timer: list[float], bar
) -> tuple[dict[str, list[str]], np.ndarray]:
    """Write every object (and augmented copy) of one class under ``folder``.

    Returns:
        split name -> the ``<synset>/<object_id>`` written into it, and the RGBA views
        (V, H, W, 4) of the class's first object (for the preview).
    """
    focal = focal_from_angle(config.camera_angle_x, config.resolution)
    split_rng = np.random.default_rng([config.seed, int(synset), 1_000_003])
    assignment = split_indices(
        config.objects_per_class, split_rng, config.val_fraction, config.test_fraction
    )
    split_of = {i: s for s, idx in assignment.items() for i in idx}
    listed: dict[str, list[str]] = {s: [] for s in SPLITS}
    first = None
    for index in range(config.objects_per_class):
        for aug in range(config.augment + 1):
            oid = object_id(synset, index, aug)
            parts = make_object(synset, index, config.seed, aug, config.max_extent)
            lo, hi = object_bounds(parts)
            cam_rng = np.random.default_rng([config.seed, int(synset), index, aug, 7])
            c2w = sample_cameras(cam_rng, config, float(np.linalg.norm(hi - lo)) / 2)
            t0 = time.perf_counter()
            rgba = render_views(parts, c2w, config.resolution, config.resolution, focal)
            timer[0] += time.perf_counter() - t0
            meta = object_meta(parts, synset, oid, object_id(synset, index), aug)
            write_object(folder / synset / oid, rgba, c2w, config.camera_angle_x, meta)
            listed[split_of[index]].append(f"{synset}/{oid}")
            first = rgba if first is None else first
            bar.update(1)
    return listed, first


def generate_dataset(
    out: Path,
    config: SynthConfig,
    overwrite: bool = False,
    preview: Path | None = None,
    preview_views: int = 4,
    progress: bool = False,
) -> SynthSummary:
    """Generate the procedural dataset into ``out`` (see the module docstring).

    The dataset is written into a hidden sibling folder and renamed into place when complete,
    so an interrupted run leaves no half-written dataset behind.

    Args:
        out: the dataset folder to create.
        config: what to generate.
        overwrite: replace ``out`` if it holds a dataset written by this generator.
        preview: also write a PNG contact sheet there (one object per class).
        preview_views: views per class on the contact sheet.
        progress: show a tqdm bar over objects.

    Raises:
        FileExistsError: ``out`` is not empty and ``overwrite`` is false (or it is not a
            dataset written by this generator).
        ValueError: an invalid configuration or preview path.
    """
    config.validate()
    out = Path(out)
    if preview is not None and Path(preview).suffix.lower() != ".png":
        raise UserError(f"--preview must name a .png file, got {preview}")
    check_output_dir(out.parent, "output folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    # one writer per dataset folder: the lock lives beside it (the folder itself is replaced)
    with folder_lock(out.parent, f".{out.name}.nfkit.lock", what=f"{out}: another nfkit synth is writing this dataset"):
        return _generate_locked(out, config, overwrite, preview, preview_views, progress)


def _generate_locked(out: Path, config: SynthConfig, overwrite: bool, preview, preview_views: int,
                     progress: bool) -> SynthSummary:
    _check_output(out, overwrite)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    _remove_stale_partials(out)
    if tmp.exists():
        shutil.rmtree(tmp)
    total = len(config.classes) * config.objects_per_class * (config.augment + 1)
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    firsts: dict[str, np.ndarray] = {}
    pick = np.unique(
        np.linspace(0, config.views - 1, min(preview_views, config.views)).round().astype(int)
    )
    start, timer = time.perf_counter(), [0.0]
    with sigterm_cleans_up():  # SIGTERM -> SystemExit, so that the finally below removes tmp
        _generate_into(tmp, out, config, splits, firsts, pick, timer, total, preview, progress)
    if preview is not None:
        write_preview(firsts, Path(preview))
    seconds = time.perf_counter() - start
    per_class = {s: config.objects_per_class * (config.augment + 1) for s in config.classes}
    return SynthSummary(
        root=out,
        n_objects=total,
        n_augmented=total - len(config.classes) * config.objects_per_class,
        per_class={SYNSET_TO_NAME[s]: n for s, n in per_class.items()},
        per_split={s: len(v) for s, v in splits.items()},
        seconds=seconds,
        seconds_per_object=seconds / total,
        render_seconds_per_object=timer[0] / total,
        preview=Path(preview) if preview is not None else None,
        config=asdict(config),
    )


def _remove_stale_partials(out: Path) -> None:
    """Remove the ``.<name>.partial-<pid>`` (being written) and ``.<name>.old-<pid>`` (being
    replaced) folders that killed runs of this host left."""
    from nfkit.io.artifacts import pid_alive

    for old in [*out.parent.glob(f".{out.name}.partial-*"), *out.parent.glob(f".{out.name}.old-*")]:
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and old.is_dir() and not pid_alive(int(pid)):
            log.info("removing %s, left by a killed run", old)
            shutil.rmtree(old, ignore_errors=True)


def _generate_into(tmp, out, config, splits, firsts, pick, timer, total, preview, progress) -> None:
    try:
        with tqdm(total=total, disable=not progress, unit="obj", desc="synth") as bar:
            for synset in config.classes:
                listed, first = _generate_class(synset, config, tmp, timer, bar)
                if preview is not None:
                    firsts[synset] = first[pick]
                for name, items in listed.items():
                    splits[name] += items
                log.info(
                    "%s (%s): %d objects",
                    SYNSET_TO_NAME[synset],
                    synset,
                    sum(map(len, listed.values())),
                )
        (tmp / "splits").mkdir()
        for name, items in splits.items():
            (tmp / "splits" / f"{name}.txt").write_text("".join(f"{x}\n" for x in sorted(items)))
        per_class = {s: config.objects_per_class * (config.augment + 1) for s in config.classes}
        info = {
            "format": DATASET_FORMAT,
            "version": FORMAT_VERSION,
            "generator": "nfkit synth",
            "nfkit_version": __version__,
            "config": asdict(config),
            "classes": {s: SYNSET_TO_NAME[s] for s in config.classes},
            "counts": per_class,
            "splits": {s: len(v) for s, v in splits.items()},
            "n_objects": total,
        }
        (tmp / "dataset.json").write_text(json.dumps(info, indent=1))
        _install(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
