"""Vehicles: airplane, car, watercraft."""

from __future__ import annotations

import numpy as np

from nfkit.data.primitives import (
    Part,
    box,
    cone,
    cylinder,
    ellipsoid,
    rot_x,
    rot_y,
)
from nfkit.data.shapes._common import Palette, Rng


def airplane(rng: Rng) -> list[Part]:
    """Fuselage (body + nose + tail cone), swept wings, tailplane, fin, optional engines."""
    pal = Palette(rng)
    length, r = rng.uniform(2.6, 3.2), rng.uniform(0.13, 0.19)
    body = pal("body")
    x0, x1 = -length * 0.35, length * 0.3
    parts = [cylinder([x0, 0, 0], [x1, 0, 0], r, body, group="body")]
    parts.append(ellipsoid([x1, 0, 0], [r * 2.2, r, r], body, group="body"))
    parts.append(cone([x0, 0, 0], [-length / 2, r * 0.5, 0], r, r * 0.3, body, group="body"))
    span, chord = rng.uniform(2.4, 3.0), rng.uniform(0.35, 0.5)
    sweep = rng.uniform(0.1, 0.5)
    wing_x = rng.uniform(-0.1, 0.15)
    wing_y = -r * rng.uniform(0.2, 0.6)
    for sz in (-1, 1):  # each wing: a thin box swept back and slightly raised (dihedral)
        half = span / 2
        rot = rot_y(sz * sweep) @ rot_x(-sz * 0.06)
        centre = [wing_x - np.tan(sweep) * half / 2, wing_y + 0.03 * half, sz * half / 2]
        parts.append(box(centre, [chord, 0.04, half], pal("wing"), rot=rot, group="wing"))
        if rng.random() < 0.7:
            ez = sz * half * 0.4
            ex = wing_x - np.tan(sweep) * half * 0.4 + chord * 0.3
            parts.append(
                cylinder(
                    [ex - 0.3, wing_y - 0.09, ez],
                    [ex + 0.05, wing_y - 0.09, ez],
                    0.07,
                    pal("engine"),
                    group="engine",
                )
            )
    tspan, tchord = span * rng.uniform(0.3, 0.4), chord * 0.7
    for sz in (-1, 1):
        parts.append(
            box(
                [-length / 2 + tchord * 0.8, r * 0.3, sz * tspan / 4],
                [tchord, 0.03, tspan / 2],
                pal("tail"),
                rot=rot_y(sz * sweep),
                group="tail",
            )
        )
    fin_h = rng.uniform(0.35, 0.55)
    # fin: a box whose front-top corner is cut off (a swept trapezoid)
    parts.append(
        box(
            [-length / 2 + tchord * 0.75, r * 0.5 + fin_h / 2, 0],
            [tchord * 1.2, fin_h, 0.04],
            pal("tail"),
            clips=[[0.7, 0.7, 0, 0.75]],
            group="tail",
        )
    )
    return parts


def car(rng: Rng) -> list[Part]:
    """Low body, cabin with sloped windscreens, four dark wheels."""
    pal = Palette(rng)
    length, w = rng.uniform(1.9, 2.4), rng.uniform(0.85, 1.0)
    wr = rng.uniform(0.17, 0.23)
    body_h = rng.uniform(0.3, 0.42)
    y0 = wr * 0.9
    parts = [box([0, y0 + body_h / 2, 0], [length, body_h, w], pal("body"), group="body")]
    cab_l, cab_h = length * rng.uniform(0.45, 0.6), rng.uniform(0.28, 0.38)
    cab_x = rng.uniform(-0.15, 0.05) * length
    # sloped windscreen and rear window: planes through the bottom edges of the cabin box
    front, rear = rng.uniform(0.3, 0.6), rng.uniform(0.15, 0.4)
    parts.append(
        box(
            [cab_x, y0 + body_h + cab_h / 2, 0],
            [cab_l, cab_h, w * 0.86],
            pal("cabin"),
            clips=[[1, front, 0, 1 - front], [-1, rear, 0, 1 - rear]],
            group="cabin",
        )
    )
    ww = rng.uniform(0.12, 0.18)
    for sx in (-1, 1):
        for sz in (-1, 1):
            x, z = sx * length * 0.32, sz * (w / 2 - ww / 2 + 0.03)
            parts.append(
                cylinder(
                    [x, wr, z - ww / 2],
                    [x, wr, z + ww / 2],
                    wr,
                    pal("wheel", dark=True),
                    group="wheel",
                )
            )
            parts.append(
                cylinder(
                    [x, wr, z - ww / 2 - 0.005 * sz],
                    [x, wr, z + ww / 2 + 0.005 * sz],
                    wr * 0.5,
                    pal("hub"),
                    group="hub",
                )
            )
    return parts


def watercraft(rng: Rng) -> list[Part]:
    """Hull (lower half of a long ellipsoid), deck, and a cabin or a mast with a sail."""
    pal = Palette(rng)
    length, beam, depth = rng.uniform(2.4, 3.0), rng.uniform(0.55, 0.8), rng.uniform(0.3, 0.45)
    parts = [
        ellipsoid(
            [0, 0, 0],
            [length / 2, depth, beam / 2],
            pal("hull"),
            clips=[[0, 1, 0, 0]],
            group="hull",
        )
    ]
    parts.append(box([0, 0.015, 0], [length * 0.82, 0.03, beam * 0.56], pal("deck"), group="deck"))
    if rng.random() < 0.5:  # sailing boat
        mh = rng.uniform(1.4, 1.9)
        mx = rng.uniform(0.0, 0.2) * length
        parts.append(cylinder([mx, 0, 0], [mx, mh, 0], 0.025, pal("mast", dark=True), group="mast"))
        sl = length * rng.uniform(0.35, 0.45)
        # triangular sail: a thin box cut along its diagonal, behind the mast
        parts.append(
            box(
                [mx - sl / 2 - 0.03, 0.1 + mh * 0.45, 0],
                [sl, mh * 0.85, 0.02],
                pal("sail"),
                clips=[[1, 1, 0, 0]],
                group="sail",
            )
        )
        if rng.random() < 0.6:  # jib in front of the mast
            parts.append(
                box(
                    [mx + sl * 0.3, 0.1 + mh * 0.4, 0],
                    [sl * 0.55, mh * 0.7, 0.02],
                    pal("sail"),
                    clips=[[-1, 1, 0, 0]],
                    group="sail",
                )
            )
    else:  # motor boat / ship: cabin decks and a funnel
        cl, ch = length * rng.uniform(0.3, 0.45), rng.uniform(0.22, 0.35)
        cx = rng.uniform(-0.15, 0.05) * length
        parts.append(box([cx, ch / 2, 0], [cl, ch, beam * 0.5], pal("cabin"), group="cabin"))
        parts.append(
            box(
                [cx - cl * 0.1, ch + ch * 0.35, 0],
                [cl * 0.6, ch * 0.7, beam * 0.4],
                pal("cabin"),
                group="cabin",
            )
        )
        if rng.random() < 0.6:
            parts.append(
                cylinder(
                    [cx - cl * 0.2, ch * 1.6, 0],
                    [cx - cl * 0.2, ch * 2.4, 0],
                    0.07,
                    pal("funnel"),
                    group="funnel",
                )
            )
    return parts
