"""Parametric objects for the 13 ShapenetRender classes, built from primitives.

Each builder draws random proportions within its class and returns the parts of one object,
y-up, in arbitrary units (:func:`nfkit.data.synth.make_object` normalises them). Length runs along x and the
front faces +z. Parts of one semantic group (the legs of a chair) share one random colour.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nfkit.data.primitives import Part
from nfkit.data.shapes.devices import display, phone, rifle, speaker
from nfkit.data.shapes.furniture import bench, cabinet, chair, lamp, sofa, table
from nfkit.data.shapes.vehicles import airplane, car, watercraft

#: ShapeNet synset id -> builder.
BUILDERS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "02691156": airplane,
    "02828884": bench,
    "02933112": cabinet,
    "02958343": car,
    "03001627": chair,
    "03211117": display,
    "03636649": lamp,
    "03691459": speaker,
    "04090263": rifle,
    "04256520": sofa,
    "04379243": table,
    "04401088": phone,
    "04530566": watercraft,
}

__all__ = ["BUILDERS"]
