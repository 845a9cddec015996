"""Captions and prompts: text for the small CLIP and for zero-shot classification.

Captions come from an object's ``meta.json`` (written by ``nfkit synth``: the class and the
parts with their colours): ``"a 3d model of a purple airplane"``, the colour being the name of
the albedo of the object's largest part by volume. Objects without a usable ``meta.json`` (real
ShapenetRender) get ``"a 3d model of an airplane"``.

Prompts: a template with ``{}`` where the class goes, with its article (``"a 3d model of {}"``
-> ``"a 3d model of an airplane"``, as the clip2nerf reference writes "a/an"); several
templates are averaged per class (normalised text embeddings, mean, as CLIP's zero-shot code).
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nfkit.errors import UserError

DEFAULT_TEMPLATES = ("a 3d model of {}", "a photo of {}")
CAPTION_TEMPLATE = "a 3d model of {}"


def with_article(noun: str) -> str:
    """``"airplane"`` -> ``"an airplane"``, ``"purple car"`` -> ``"a purple car"``."""
    noun = noun.strip()
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def check_template(template: str) -> str:
    if template.count("{}") != 1:
        raise UserError(f"--prompt {template!r}: a template needs exactly one {{}} where the class goes")
    return template


def class_prompts(classes: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> list[list[str]]:
    """One list of prompts per class. Shapes: C classes × T templates -> [C][T] str."""
    templates = [check_template(t) for t in templates] or list(DEFAULT_TEMPLATES)
    return [[t.format(with_article(c.replace("_", " "))) for t in templates] for c in classes]


def colour_name(rgb: Sequence[float]) -> str:
    """A plain colour word for an RGB albedo in [0, 1] (hue bins; greys by lightness)."""
    r, g, b = (float(np.clip(v, 0, 1)) for v in rgb)
    h, lightness, s = colorsys.rgb_to_hls(r, g, b)
    if s < 0.2 or max(r, g, b) - min(r, g, b) < 0.12:
        return "white" if lightness > 0.8 else "black" if lightness < 0.18 else "grey"
    deg = h * 360.0
    if lightness < 0.3 and 15 <= deg < 50:
        return "brown"
    for limit, name in ((15, "red"), (45, "orange"), (70, "yellow"), (165, "green"), (200, "cyan"),
                        (255, "blue"), (290, "purple"), (335, "pink"), (360, "red")):
        if deg < limit:
            return name
    return "red"  # pragma: no cover - deg < 360 always


def dominant_colour(meta: dict) -> str | None:
    """Colour word of the largest part (|det(matrix)| as its volume), or None without parts."""
    best, best_vol = None, -1.0
    for part in meta.get("parts", []) or []:
        try:
            vol = abs(float(np.linalg.det(np.asarray(part["matrix"], np.float64))))
            col = [float(c) for c in part["color"]]
        except (KeyError, TypeError, ValueError, np.linalg.LinAlgError):
            continue
        if len(col) == 3 and vol > best_vol:
            best, best_vol = col, vol
    return None if best is None else colour_name(best)


def object_colour(object_folder: str | Path | None) -> str | None:
    """The dominant colour word from ``<object_folder>/meta.json``; None without one."""
    if object_folder is None:
        return None
    path = Path(object_folder) / "meta.json"
    if not path.is_file():
        return None
    try:
        return dominant_colour(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def object_caption(class_name: str, object_folder: str | Path | None) -> str:
    """Caption of one object from its ``meta.json`` (see the module)."""
    colour = object_colour(object_folder)
    noun = class_name.replace("_", " ")
    return CAPTION_TEMPLATE.format(with_article(f"{colour} {noun}" if colour else noun))


#: templates the small CLIP is trained with (one drawn per image and step)
TRAIN_TEMPLATES = ("a 3d model of {}", "a photo of {}", "a rendering of {}", "an image of {}", "{}")


def caption_variants(class_name: str, colour: str | None) -> list[str]:
    """Every training caption of one object, in a fixed order of forms shared by all objects:
    each of :data:`TRAIN_TEMPLATES` with "colour class" (the class alone without a colour) and
    with the class alone (so that class-only prompts are in distribution)."""
    noun = class_name.replace("_", " ")
    nouns = [f"{colour} {noun}" if colour else noun, noun]
    return [t.format(with_article(n)) for t in TRAIN_TEMPLATES for n in nouns]


__all__ = [
    "DEFAULT_TEMPLATES",
    "CAPTION_TEMPLATE",
    "with_article",
    "check_template",
    "class_prompts",
    "colour_name",
    "dominant_colour",
    "object_colour",
    "object_caption",
    "TRAIN_TEMPLATES",
    "caption_variants",
]
