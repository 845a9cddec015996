"""Helpers shared by the class builders."""

from __future__ import annotations

import numpy as np

from nfkit.data.primitives import Part, box, cylinder, random_color

Rng = np.random.Generator


class Palette:
    """One random colour per group name."""

    def __init__(self, rng: Rng):
        self.rng, self.colors = rng, {}

    def __call__(self, group: str, dark: bool = False) -> np.ndarray:
        if group not in self.colors:
            self.colors[group] = random_color(self.rng, dark=dark)
        return self.colors[group]


def four_legs(pal: Palette, xs: float, zs: float, top: float, r: float, round_: bool) -> list[Part]:
    """Four vertical legs at (+-xs, +-zs) from y=0 to ``top``."""
    out = []
    for sx in (-1, 1):
        for sz in (-1, 1):
            x, z = sx * xs, sz * zs
            if round_:
                out.append(cylinder([x, 0, z], [x, top, z], r, pal("leg"), group="leg"))
            else:
                out.append(box([x, top / 2, z], [2 * r, top, 2 * r], pal("leg"), group="leg"))
    return out
