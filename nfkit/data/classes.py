"""The 13 ShapenetRender classes: ShapeNet synset ids <-> human-readable names.

ShapenetRender stores each class in a folder named by its ShapeNet synset id (SPEC §2);
the rest of nfkit prints the names. :func:`resolve_class` accepts either spelling.
"""

from __future__ import annotations

from collections.abc import Iterable

from nfkit.errors import UserError

#: ShapeNet synset id -> class name, in ShapeNet synset order (SPEC §2).
SYNSET_TO_NAME: dict[str, str] = {
    "02691156": "airplane",
    "02828884": "bench",
    "02933112": "cabinet",
    "02958343": "car",
    "03001627": "chair",
    "03211117": "display",
    "03636649": "lamp",
    "03691459": "speaker",
    "04090263": "rifle",
    "04256520": "sofa",
    "04379243": "table",
    "04401088": "phone",
    "04530566": "watercraft",
}

#: Class name -> ShapeNet synset id.
NAME_TO_SYNSET: dict[str, str] = {name: synset for synset, name in SYNSET_TO_NAME.items()}

#: The class names, in synset order.
CLASS_NAMES: tuple[str, ...] = tuple(SYNSET_TO_NAME.values())

#: The synset ids, sorted.
SYNSETS: tuple[str, ...] = tuple(SYNSET_TO_NAME)


def class_name(folder: str) -> str:
    """Human-readable name of a class folder: the ShapeNet name for a known synset id,
    otherwise the folder name itself (custom datasets keep their own class names)."""
    return SYNSET_TO_NAME.get(folder, folder)


def resolve_class(name_or_synset: str) -> str:
    """Return the synset id for a class name or synset id (case-insensitive name).

    Raises:
        ValueError: unknown class; the message lists the valid names.
    """
    key = name_or_synset.strip()
    if key in SYNSET_TO_NAME:
        return key
    if key.lower() in NAME_TO_SYNSET:
        return NAME_TO_SYNSET[key.lower()]
    raise UserError(
        f"unknown class {name_or_synset!r}; valid classes: {', '.join(CLASS_NAMES)} "
        "(or their ShapeNet synset ids)"
    )


def resolve_classes(names: Iterable[str] | str | None) -> list[str]:
    """Synset ids for a list (or a comma-separated string) of names/synsets; ``None`` or an
    empty selection means all 13 classes. Order follows the synset order, duplicates dropped."""
    if names is None:
        return list(SYNSETS)
    if isinstance(names, str):
        names = names.split(",")
    wanted = {resolve_class(n) for n in names if n.strip()}
    if not wanted:
        return list(SYNSETS)
    return [s for s in SYNSETS if s in wanted]
