"""Reading multi-view object folders: ShapenetRender, NeRF-synthetic scenes, ``nfkit synth``.

Layout (SPEC §2; data_specs/dataset-layout.md)::

    <root>/splits/{train,val,test}.txt            optional, "<class>/<object_id>" per line
    <root>/<class>/<object_id>/transforms_train.json
    <root>/<class>/<object_id>/train/00.png ...   RGBA

``transforms_*.json`` follows the Blender / NeRF-synthetic convention: ``camera_angle_x``
(radians) and ``frames[]`` with ``file_path`` (relative to the object folder, with or without the
``.png`` extension) and ``transform_matrix`` (4x4 camera-to-world, OpenGL axes). Camera
conventions are in :mod:`nfkit.data.cameras`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nfkit.data.cameras import focal_from_angle
from nfkit.data.classes import NAME_TO_SYNSET, class_name
from nfkit.errors import UserError

log = logging.getLogger(__name__)

#: Transforms files recognised in an object folder, in order of preference.
TRANSFORMS_FILES = (
    "transforms_train.json",
    "transforms_val.json",
    "transforms_test.json",
    "transforms.json",
)
#: Image extensions tried when ``file_path`` has none.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
#: Split given to objects missing from split lists that exist.
UNLISTED = "unlisted"


@dataclass
class ObjectEntry:
    """One object folder found in a dataset.

    Attributes:
        object_id: the object folder's name.
        class_name: human name for a known ShapeNet synset, else the class folder's name.
        split: from the dataset's split lists if present ("unlisted" if absent from them),
            else "train".
        path: the object folder.
    """

    object_id: str
    class_name: str
    split: str
    path: Path


@dataclass
class MultiViewObject:
    """The views of one object.

    Attributes:
        images: (V, H, W, 4) float32 RGBA in [0, 1], RGB not premultiplied.
        c2w: (V, 4, 4) float32 camera-to-world matrices, OpenGL convention.
        focal: focal length in pixels, ``0.5 * W / tan(0.5 * camera_angle_x)``.
        width, height: image size in pixels.
    """

    object_id: str
    class_name: str
    split: str
    path: Path
    images: np.ndarray
    c2w: np.ndarray
    focal: float
    width: int
    height: int

    def composite(self, background: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
        """(V, H, W, 3) RGB alpha-composited over a constant ``background`` colour (3,)."""
        rgb, alpha = self.images[..., :3], self.images[..., 3:]
        return rgb * alpha + np.asarray(background, np.float32) * (1.0 - alpha)


# ----------------------------------------------------------------------------- scanning


def _has_transforms(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TRANSFORMS_FILES)


def _subfolders(folder: Path) -> list[Path]:
    """Visible sub-folders, sorted; unreadable folders count as empty."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except PermissionError:
        log.warning("skipping unreadable folder %s", folder)
        return []


def read_split_lists(root: Path) -> dict[str, str]:
    """``<class>/<object_id>`` -> split name, from ``root/splits/*.txt`` (empty if none).

    Blank lines and ``#`` comments are ignored; a line may also be a bare object id.
    """
    folder = Path(root) / "splits"
    result: dict[str, str] = {}
    if not folder.is_dir():
        return result
    for file in sorted(folder.glob("*.txt")):
        for line in file.read_text().splitlines():
            item = line.split("#", 1)[0].strip().strip("/")
            if item:
                result[item] = file.stem
    return result


def _split_of(lists: dict[str, str], class_folder: str, object_id: str) -> str:
    if not lists:
        return "train"
    return lists.get(f"{class_folder}/{object_id}", lists.get(object_id, UNLISTED))


def scan_dataset(
    root: Path, classes: Sequence[str] | None = None, split: str | None = None
) -> list[ObjectEntry]:
    """Find the object folders of a dataset.

    ``root`` may be a dataset root (``<root>/<class>/<object>/``), a class folder
    (``<root>/<object>/``) or a single object folder. An object folder is one holding a
    ``transforms*.json`` file.

    Args:
        root: the folder to scan.
        classes: keep only these classes (names, synset ids or folder names).
        split: keep only this split ("train", "val", "test", ...).

    Returns:
        entries sorted by (class folder, object id).

    Raises:
        FileNotFoundError: ``root`` does not exist or holds no object folder.
        ValueError: ``root`` is not a folder, or the filters match nothing.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise UserError(f"not a folder: {root}")
    # (class folder, object folder, the dataset root whose splits/ applies)
    found: list[tuple[str, Path, Path]] = []
    resolved = root.resolve()
    if _has_transforms(root):
        found.append((resolved.parent.name, root, resolved.parent.parent))
    else:
        for child in _subfolders(root):
            if _has_transforms(child):
                found.append((resolved.name, child, resolved.parent))
                continue
            found += [(child.name, obj, root) for obj in _subfolders(child) if _has_transforms(obj)]
    if not found:
        raise FileNotFoundError(
            f"no transforms*.json found in {root} or its sub-folders "
            "(expected <root>/<class>/<object_id>/transforms_train.json)"
        )
    lists = {base: read_split_lists(base) for base in {item[2] for item in found}}
    entries = [
        ObjectEntry(obj.name, class_name(cls), _split_of(lists[base], cls, obj.name), obj)
        for cls, obj, base in sorted(found, key=lambda item: (item[0], item[1].name))
    ]
    if classes:
        wanted = {c.strip().lower() for c in classes if c.strip()}
        wanted |= {NAME_TO_SYNSET[c] for c in wanted if c in NAME_TO_SYNSET}
        kept = [
            e
            for e in entries
            if e.class_name.lower() in wanted or e.path.parent.name.lower() in wanted
        ]
        if not kept:
            present = sorted({e.class_name for e in entries})
            raise UserError(
                f"no objects of class {', '.join(classes)} in {root}; classes present: {', '.join(present)}"
            )
        entries = kept
    if split is not None:
        kept = [e for e in entries if e.split == split]
        if not kept:
            present = sorted({e.split for e in entries})
            raise UserError(
                f"no objects in split {split!r} in {root}; splits present: {', '.join(present)}"
            )
        entries = kept
    return entries


# ----------------------------------------------------------------------------- loading


def _transforms_file(folder: Path, which: str) -> Path:
    candidates = [folder / f"transforms_{which}.json"]
    if which == "train":
        candidates.append(folder / "transforms.json")
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{candidates[0]} not found")


def _read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(meta, dict) or "camera_angle_x" not in meta or not meta.get("frames"):
        raise UserError(f"{path}: expected 'camera_angle_x' and a non-empty 'frames' list")
    return meta


def _image_path(folder: Path, file_path: str, transforms: Path) -> Path:
    rel = file_path[2:] if file_path.startswith("./") else file_path
    base = folder / rel
    if base.suffix.lower() in IMAGE_EXTENSIONS and base.is_file():
        return base
    for ext in IMAGE_EXTENSIONS:
        path = base.with_name(base.name + ext)
        if path.is_file():
            return path
    raise FileNotFoundError(f"frame image {base}.png not found (listed in {transforms.name})")


#: Pillow modes read through ``convert("RGBA")`` without losing values: 8-bit (and 1-bit)
#: grey, grey + alpha, palette (its transparency becomes alpha), RGB, RGBA and friends.
_EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})
#: Pillow's modes of 16-bit greyscale PNGs (``convert("RGBA")`` would clip them to 255: white).
_SIXTEEN_BIT_GREY = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


def _read_rgba(path: Path) -> np.ndarray:
    """(H, W, 4) float32 RGBA in [0, 1]; images without alpha get alpha 1.

    Reads 8-bit images of every usual mode (grey, grey + alpha, palette with or without
    transparency, RGB, RGBA) and 16-bit greyscale (scaled by 1/65535); other modes (float or
    32-bit integer images) are refused with a message naming the mode.
    """
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in _EIGHT_BIT_MODES:
                return np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
            if mode in _SIXTEEN_BIT_GREY:
                grey = np.asarray(im).astype(np.float64)
            else:
                grey = None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None
    if grey is None or grey.ndim != 2 or grey.min(initial=0) < 0 or grey.max(initial=0) > 65535:
        raise UserError(
            f"cannot read image {path}: unsupported image mode {mode!r} "
            "(expected 8-bit grey, grey + alpha, palette, RGB, RGBA or 16-bit grey)"
        )
    rgba = np.ones((*grey.shape, 4), np.float32)
    rgba[..., :3] = (grey / 65535.0)[..., None]
    return rgba


def check_cameras(c2w: np.ndarray, source: Path | str, frames: Sequence[int] | None = None) -> None:
    """Refuse camera-to-world matrices that are not rigid camera poses.

    The one check of every reader of multi-view data (``check-data``, ``fit-nerfs``,
    ``render --cameras dataset``): every entry finite, the rotation block orthonormal with
    determinant +1 (not singular, not a reflection) within 1e-3, bottom row (0, 0, 0, 1).

    Shapes: c2w (V, 4, 4). ``frames`` names the frame index of each row in the message.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    frames = list(range(len(c2w))) if frames is None else list(frames)
    eye = np.eye(3)
    for row, pose in enumerate(c2w):
        where = f"{source}: frame {frames[row]} transform_matrix"
        if not np.isfinite(pose).all():
            raise UserError(f"{where} has non-finite entries (NaN or inf)")
        rot = pose[:3, :3]
        err = float(np.abs(rot.T @ rot - eye).max())
        if err > 1e-3:
            raise UserError(f"{where} is not a rigid camera pose: its rotation is not orthonormal (error {err:.2g})")
        if np.linalg.det(rot) < 0:
            raise UserError(f"{where} is a reflection (rotation determinant -1), not a camera pose")
        if np.abs(pose[3] - [0.0, 0.0, 0.0, 1.0]).max() > 1e-6:
            raise UserError(f"{where} has bottom row {pose[3].tolist()}, expected [0, 0, 0, 1]")


def _camera_angle(meta: dict, path: Path) -> float:
    raw = meta["camera_angle_x"]
    try:
        angle = float(raw)
    except (TypeError, ValueError):
        raise UserError(f"{path}: camera_angle_x must be a number (radians), got {raw!r}") from None
    if isinstance(raw, bool) or not 0.0 < angle < np.pi:
        raise UserError(f"{path}: camera_angle_x must be in (0, pi) radians, got {raw!r}")
    return angle


def downscale(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-filter an (H, W, 4) RGBA image to (height, width, 4).

    Colours are averaged premultiplied by alpha (so the background does not bleed into edges)
    and un-premultiplied afterwards; alpha becomes the covered fraction of each new pixel.
    """
    alpha = image[..., 3]
    channels = [image[..., c] * alpha for c in range(3)] + [alpha]
    out = np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(ch, dtype=np.float32)).resize(
                    (width, height), Image.Resampling.BOX
                )
            )
            for ch in channels
        ],
        axis=-1,
    )
    a = out[..., 3:]
    out[..., :3] = np.where(a > 1e-6, out[..., :3] / np.maximum(a, 1e-6), 0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _view_indices(n: int, max_views: int | None) -> np.ndarray:
    if max_views is None or max_views >= n:
        return np.arange(n)
    if max_views < 1:
        raise UserError(f"max_views must be >= 1, got {max_views}")
    return np.unique(np.linspace(0, n - 1, max_views).round().astype(int))


def load_object(
    entry_or_path: ObjectEntry | Path | str,
    max_views: int | None = None,
    resolution: int | None = None,
    transforms: str = "train",
    shrink_only: bool = False,
) -> MultiViewObject:
    """Load the views and cameras of one object folder.

    Args:
        entry_or_path: an :class:`ObjectEntry` or an object folder.
        max_views: keep this many views, evenly spaced through the frame list.
        resolution: downscale to this width (area filter, aspect kept); focal scales along.
        transforms: which ``transforms_<name>.json`` to read ("train"; falls back to
            ``transforms.json``).
        shrink_only: treat ``resolution`` as an upper bound: images narrower than it are kept
            at their own size instead of raising.

    Raises:
        FileNotFoundError: the folder, its transforms file or a frame image is missing.
        ValueError: a corrupt or truncated image, a malformed transforms file, images of
            different sizes, or ``resolution`` larger than the images.
    """
    if isinstance(entry_or_path, ObjectEntry):
        entry = entry_or_path
    else:
        folder = Path(entry_or_path)
        if not folder.is_dir():
            raise FileNotFoundError(f"object folder not found: {folder}")
        entry = ObjectEntry(folder.name, class_name(folder.resolve().parent.name), "train", folder)
    tf_path = _transforms_file(entry.path, transforms)
    meta = _read_json(tf_path)
    angle = _camera_angle(meta, tf_path)
    frames = meta["frames"]
    images, poses = [], []
    picked = _view_indices(len(frames), max_views)
    for i in picked:
        frame = frames[i]
        try:
            pose = np.asarray(frame["transform_matrix"], dtype=np.float64)
            file_path = str(frame["file_path"])
        except (KeyError, TypeError, ValueError):
            raise UserError(
                f"{tf_path}: frame {i} needs 'file_path' and a 4x4 'transform_matrix'"
            ) from None
        if pose.shape == (3, 4):
            pose = np.vstack([pose, [0.0, 0.0, 0.0, 1.0]])
        if pose.shape != (4, 4):
            raise UserError(
                f"{tf_path}: frame {i} transform_matrix has shape {pose.shape}, expected (4, 4)"
            )
        path = _image_path(entry.path, file_path, tf_path)
        image = _read_rgba(path)
        if images and image.shape != images[0].shape:
            raise UserError(
                f"{path}: size {image.shape[1]}x{image.shape[0]} differs from the other views"
            )
        images.append(image)
        poses.append(pose)
    check_cameras(np.stack(poses), tf_path, [int(i) for i in picked])
    height, width = images[0].shape[:2]
    focal = focal_from_angle(angle, width)
    if shrink_only and resolution is not None and resolution > width:
        resolution = width
    if resolution is not None and resolution != width:
        if not 1 <= resolution <= width:
            raise UserError(
                f"resolution must be between 1 and the image width {width}, got {resolution}"
            )
        new_h = max(1, round(height * resolution / width))
        images = [downscale(im, resolution, new_h) for im in images]
        focal *= resolution / width
        width, height = resolution, new_h
    return MultiViewObject(
        object_id=entry.object_id,
        class_name=entry.class_name,
        split=entry.split,
        path=entry.path,
        images=np.stack(images).astype(np.float32),
        c2w=np.stack(poses).astype(np.float32),
        focal=float(focal),
        width=int(width),
        height=int(height),
    )


# ----------------------------------------------------------------------------- cameras files


@dataclass
class CameraSet:
    """The cameras of any Blender-convention transforms file, with ground truth where present.

    Attributes:
        c2w: (V, 4, 4) float32 camera-to-world matrices, OpenGL convention.
        width, height, focal: image size and focal length in pixels (at the requested width).
        names: (V,) a name per view (the frame's ``file_path`` stem, else its index).
        images: (V,) (H, W, 4) float32 RGBA ground truth per view, None where the frame's
            image is absent.
    """

    path: Path
    c2w: np.ndarray
    width: int
    height: int
    focal: float
    names: list[str]
    images: list[np.ndarray | None]


def _positive_number(meta: dict, key: str, path: Path) -> float | None:
    if key not in meta:
        return None
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise UserError(f"{path}: {key!r} must be a positive number, got {value!r}")
    return float(value)


def load_cameras(path: str | Path, resolution: int | None = None) -> CameraSet:
    """Read the cameras of a transforms file (``camera_angle_x``, ``frames[].transform_matrix``;
    optional NeRF-synthetic ``w``, ``h``, ``fl_x``) and the ground-truth images its frames name,
    when they exist next to it.

    Image size: ``w``/``h`` if given, else the first ground-truth image's size; ``resolution``
    sets the width (height and focal scale along). Focal: ``fl_x`` if given, else
    ``0.5·W / tan(0.5·camera_angle_x)``; pixels are square and the principal point is the image
    centre (a file whose ``fl_y``, ``cx`` or ``cy`` says otherwise is refused).

    Raises:
        FileNotFoundError: no such file. ValueError: a malformed file, or no image size.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such cameras file")
    meta = _read_json(path)
    frames = meta["frames"]
    poses, names, files = [], [], []
    for i, frame in enumerate(frames):
        try:
            pose = np.asarray(frame["transform_matrix"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: frame {i} needs a 4x4 'transform_matrix'") from None
        if pose.shape == (3, 4):
            pose = np.vstack([pose, [0.0, 0.0, 0.0, 1.0]])
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
            raise UserError(f"{path}: frame {i} transform_matrix must be a finite 4x4 matrix")
        poses.append(pose)
        file_path = frame.get("file_path") if isinstance(frame, dict) else None
        names.append(Path(str(file_path)).stem if file_path else f"{i:03d}")
        image = None
        if file_path:
            try:
                image = _image_path(path.parent, str(file_path), path)
            except FileNotFoundError:
                image = None
        files.append(image)
    check_cameras(np.stack(poses), path)  # the same check as check-data and fit-nerfs
    images = [None if f is None else _read_rgba(f) for f in files]
    sizes = {im.shape[:2] for im in images if im is not None}
    if len(sizes) > 1:
        raise UserError(f"{path}: the ground-truth images have different sizes {sorted(sizes)}")
    w, h = _positive_number(meta, "w", path), _positive_number(meta, "h", path)
    if w is None or h is None:
        if not sizes:
            raise UserError(f"{path}: no image size: give 'w' and 'h' in the file, or ground-truth images")
        h, w = next(iter(sizes))
    width, height = int(round(w)), int(round(h))
    if sizes and next(iter(sizes)) != (height, width):
        raise UserError(f"{path}: 'w'/'h' ({width}x{height}) differ from the images' size")
    fl_x = _positive_number(meta, "fl_x", path)
    try:
        focal = fl_x if fl_x is not None else focal_from_angle(float(meta["camera_angle_x"]), width)
    except (TypeError, ValueError):
        raise UserError(f"{path}: 'camera_angle_x' must be an angle in (0, pi) radians, got {meta['camera_angle_x']!r}") from None
    fl_y = _positive_number(meta, "fl_y", path)
    if fl_y is not None and abs(fl_y - focal) > 1e-3 * focal:
        raise UserError(f"{path}: fl_y {fl_y} differs from fl_x {focal}; only square pixels are supported")
    for key, centre in (("cx", width / 2), ("cy", height / 2)):
        value = _positive_number(meta, key, path)
        if value is not None and abs(value - centre) > 0.5:
            raise UserError(f"{path}: {key} {value} is not the image centre {centre}; not supported")
    if resolution is not None and resolution != width:
        if resolution < 1:
            raise UserError(f"resolution must be >= 1, got {resolution}")
        new_h = max(1, round(height * resolution / width))
        focal *= resolution / width
        images = [None if im is None else downscale(im, resolution, new_h) if resolution < width else
                  _upscale(im, resolution, new_h) for im in images]
        width, height = resolution, new_h
    return CameraSet(path, np.stack(poses).astype(np.float32), width, height, float(focal), names, images)


def _upscale(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of an (H, W, 4) RGBA image, for ground truth smaller than the render."""
    return np.stack(
        [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c])).resize((width, height), Image.Resampling.BILINEAR))
         for c in range(4)], axis=-1,
    ).clip(0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- checking


@dataclass
class DatasetReport:
    """Summary of a dataset that :func:`check_dataset` read completely."""

    root: Path
    n_objects: int
    per_class: dict[str, int]
    per_split: dict[str, int]
    views: tuple[int, int]
    """Fewest and most views per object."""
    sizes: list[tuple[int, int]]
    """Distinct image sizes (width, height)."""


def check_dataset(
    root: Path,
    classes: Sequence[str] | None = None,
    split: str | None = None,
    progress: bool = False,
) -> DatasetReport:
    """Read every object of a dataset (all views) and check images and cameras.

    Raises:
        FileNotFoundError / ValueError / UserError: as :func:`scan_dataset` and
            :func:`load_object` (which refuses bad cameras with :func:`check_cameras`).
    """
    from tqdm import tqdm

    entries = scan_dataset(root, classes=classes, split=split)
    per_class: dict[str, int] = {}
    per_split: dict[str, int] = {}
    counts, sizes = [], set()
    for entry in tqdm(entries, disable=not progress, unit="obj", desc="check"):
        obj = load_object(entry)  # cameras checked there (check_cameras), as for fit-nerfs
        per_class[entry.class_name] = per_class.get(entry.class_name, 0) + 1
        per_split[entry.split] = per_split.get(entry.split, 0) + 1
        counts.append(len(obj.images))
        sizes.add((obj.width, obj.height))
    return DatasetReport(
        Path(root), len(entries), per_class, per_split, (min(counts), max(counts)), sorted(sizes)
    )
