"""Furniture: chair, table, bench, sofa, cabinet, lamp."""

from __future__ import annotations

import numpy as np

from nfkit.data.primitives import (
    Part,
    box,
    capsule,
    cone,
    cylinder,
    ellipsoid,
    rot_x,
)
from nfkit.data.shapes._common import Palette, Rng, four_legs


def chair(rng: Rng) -> list[Part]:
    """Seat + backrest + four legs (+ armrests sometimes)."""
    pal = Palette(rng)
    w, d = rng.uniform(0.85, 1.1), rng.uniform(0.85, 1.1)
    h, t = rng.uniform(0.8, 1.0), rng.uniform(0.08, 0.14)
    back_h, lr = rng.uniform(0.9, 1.3), rng.uniform(0.04, 0.065)
    parts = [box([0, h + t / 2, 0], [w, t, d], pal("seat"), group="seat")]
    parts += four_legs(pal, w / 2 - lr * 1.5, d / 2 - lr * 1.5, h, lr, rng.random() < 0.5)
    tilt = rng.uniform(0.0, 0.2)
    bt = rng.uniform(0.06, 0.12)
    cy, cz = h + t + back_h / 2 * np.cos(tilt), -d / 2 + bt / 2 - back_h / 2 * np.sin(tilt)
    parts.append(box([0, cy, cz], [w, back_h, bt], pal("back"), rot=rot_x(-tilt), group="back"))
    if rng.random() < 0.35:
        ah = rng.uniform(0.25, 0.35)
        for sx in (-1, 1):
            x = sx * (w / 2 - 0.04)
            parts.append(box([x, h + t + ah, 0], [0.08, 0.06, d * 0.9], pal("arm"), group="arm"))
            parts.append(
                box([x, h + t + ah / 2, d * 0.35], [0.06, ah, 0.06], pal("arm"), group="arm")
            )
    return parts


def table(rng: Rng) -> list[Part]:
    """Large top + legs (four legs, or a central pedestal under a round top)."""
    pal = Palette(rng)
    h, t = rng.uniform(0.9, 1.2), rng.uniform(0.06, 0.1)
    if rng.random() < 0.3:
        r = rng.uniform(0.8, 1.1)
        parts = [cylinder([0, h, 0], [0, h + t, 0], r, pal("top"), group="top")]
        parts.append(
            cylinder([0, 0.05, 0], [0, h, 0], rng.uniform(0.06, 0.1), pal("leg"), group="leg")
        )
        parts.append(
            cylinder([0, 0, 0], [0, 0.06, 0], r * rng.uniform(0.4, 0.55), pal("leg"), group="leg")
        )
        return parts
    w, d = rng.uniform(1.6, 2.3), rng.uniform(0.9, 1.3)
    lr = rng.uniform(0.04, 0.07)
    parts = [box([0, h + t / 2, 0], [w, t, d], pal("top"), group="top")]
    inset = rng.uniform(0.05, 0.15)
    parts += four_legs(pal, w / 2 - inset, d / 2 - inset, h, lr, rng.random() < 0.5)
    if rng.random() < 0.4:  # apron under the top
        parts.append(
            box([0, h - 0.06, 0], [w - 2 * inset, 0.12, d - 2 * inset], pal("top"), group="top")
        )
    return parts


def bench(rng: Rng) -> list[Part]:
    """Long narrow seat on legs, sometimes with a low backrest."""
    pal = Palette(rng)
    length, d = rng.uniform(2.2, 3.0), rng.uniform(0.45, 0.65)
    h, t, lr = rng.uniform(0.5, 0.7), rng.uniform(0.06, 0.1), rng.uniform(0.04, 0.06)
    parts = []
    n_slats = int(rng.integers(1, 4))
    gap = 0.03 if n_slats > 1 else 0.0
    sd = (d - gap * (n_slats - 1)) / n_slats
    for i in range(n_slats):
        z = -d / 2 + sd / 2 + i * (sd + gap)
        parts.append(box([0, h + t / 2, z], [length, t, sd], pal("seat"), group="seat"))
    for x in (-1, 1):  # side frames: a pair of legs joined by a stretcher
        xl = x * (length / 2 - 0.15)
        for z in (-1, 1):
            parts.append(
                box([xl, h / 2, z * (d / 2 - lr)], [2 * lr, h, 2 * lr], pal("leg"), group="leg")
            )
        parts.append(box([xl, h * 0.25, 0], [2 * lr, 0.05, d - 2 * lr], pal("leg"), group="leg"))
    if rng.random() < 0.5:
        bh = rng.uniform(0.35, 0.55)
        parts.append(
            box(
                [0, h + t + 0.08 + bh / 2, -d / 2 + 0.03],
                [length, bh, 0.05],
                pal("back"),
                group="back",
            )
        )
        for x in (-1, 1):
            parts.append(
                box(
                    [x * (length / 2 - 0.15), h + t + 0.04, -d / 2 + 0.03],
                    [0.06, 0.12, 0.05],
                    pal("back"),
                    group="back",
                )
            )
    return parts


def sofa(rng: Rng) -> list[Part]:
    """Wide thick base, thick backrest, two armrests, seat cushions, short feet."""
    pal = Palette(rng)
    w, d = rng.uniform(2.0, 2.8), rng.uniform(0.9, 1.1)
    base_h, arm_w = rng.uniform(0.3, 0.4), rng.uniform(0.18, 0.28)
    arm_h, back_h, back_t = rng.uniform(0.3, 0.45), rng.uniform(0.45, 0.7), rng.uniform(0.2, 0.3)
    foot = 0.08
    parts = [box([0, foot + base_h / 2, 0], [w, base_h, d], pal("base"), group="base")]
    parts.append(
        box(
            [0, foot + base_h + back_h / 2, -d / 2 + back_t / 2],
            [w, back_h, back_t],
            pal("back"),
            group="back",
        )
    )
    for sx in (-1, 1):
        parts.append(
            box(
                [sx * (w / 2 - arm_w / 2), foot + base_h + arm_h / 2, back_t / 2 * 0.0],
                [arm_w, arm_h, d],
                pal("arm"),
                group="arm",
            )
        )
    n_cush = int(rng.integers(2, 4))
    inner = w - 2 * arm_w
    cw = inner / n_cush
    for i in range(n_cush):
        x = -inner / 2 + cw / 2 + i * cw
        parts.append(
            box(
                [x, foot + base_h + 0.06, back_t / 2],
                [cw * 0.96, 0.12, d - back_t],
                pal("cushion"),
                group="cushion",
            )
        )
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(
                box(
                    [sx * (w / 2 - 0.1), foot / 2, sz * (d / 2 - 0.1)],
                    [0.08, foot, 0.08],
                    pal("foot", dark=True),
                    group="foot",
                )
            )
    return parts


def cabinet(rng: Rng) -> list[Part]:
    """Upright box with doors or drawers on the front and small handles, on a plinth."""
    pal = Palette(rng)
    w, h, d = rng.uniform(0.9, 1.4), rng.uniform(1.3, 1.9), rng.uniform(0.5, 0.7)
    plinth = 0.08
    parts = [box([0, plinth + h / 2, 0], [w, h, d], pal("body"), group="body")]
    parts.append(
        box(
            [0, plinth / 2, 0],
            [w * 0.94, plinth, d * 0.92],
            pal("plinth", dark=True),
            group="plinth",
        )
    )
    front = d / 2 + 0.015
    m = 0.04
    if rng.random() < 0.5:  # two doors
        dw, dh = (w - 3 * m) / 2, h - 2 * m
        for sx in (-1, 1):
            x = sx * (m / 2 + dw / 2)
            parts.append(box([x, plinth + h / 2, front], [dw, dh, 0.03], pal("door"), group="door"))
            parts.append(
                box(
                    [sx * (m / 2 + 0.06), plinth + h / 2, front + 0.035],
                    [0.04, 0.22, 0.04],
                    pal("handle", dark=True),
                    group="handle",
                )
            )
    else:  # a column of drawers
        n = int(rng.integers(3, 6))
        dh = (h - (n + 1) * m) / n
        for i in range(n):
            y = plinth + m + dh / 2 + i * (dh + m)
            parts.append(box([0, y, front], [w - 2 * m, dh, 0.03], pal("door"), group="door"))
            parts.append(
                box(
                    [0, y, front + 0.035],
                    [0.25, 0.04, 0.04],
                    pal("handle", dark=True),
                    group="handle",
                )
            )
    return parts


def lamp(rng: Rng) -> list[Part]:
    """Flat base + thin stem + conical shade (straight floor/table lamp or angled desk lamp)."""
    pal = Palette(rng)
    base_r = rng.uniform(0.25, 0.4)
    stem_r = rng.uniform(0.025, 0.045)
    parts = [
        cylinder([0, 0, 0], [0, rng.uniform(0.04, 0.09), 0], base_r, pal("base"), group="base")
    ]
    if rng.random() < 0.6:  # straight lamp with a wide shade
        h = rng.uniform(1.0, 1.6)
        parts.append(cylinder([0, 0.03, 0], [0, h, 0], stem_r, pal("stem"), group="stem"))
        sh = rng.uniform(0.35, 0.5)
        rb, rt = rng.uniform(0.3, 0.45), rng.uniform(0.12, 0.25)
        parts.append(
            cone([0, h - sh * 0.55, 0], [0, h + sh * 0.45, 0], rb, rt, pal("shade"), group="shade")
        )
        parts.append(ellipsoid([0, h - sh * 0.45, 0], 0.08, pal("bulb"), group="bulb"))
        return parts
    # desk lamp: two arm segments, shade pointing down
    a1, a2 = rng.uniform(0.7, 1.0), rng.uniform(0.6, 0.9)
    ang1 = rng.uniform(0.15, 0.4)
    ang2 = rng.uniform(0.9, 1.3)
    p0 = np.array([0.0, 0.05, 0.0])
    p1 = p0 + a1 * np.array([np.sin(ang1), np.cos(ang1), 0])
    p2 = p1 + a2 * np.array([np.sin(ang2), np.cos(ang2), 0])
    parts += capsule(p0, p1, stem_r, pal("stem"), group="stem")
    parts += capsule(p1, p2, stem_r, pal("stem"), group="stem")
    sh = rng.uniform(0.3, 0.4)
    down = np.array([0.35, -1.0, 0])
    down /= np.linalg.norm(down)
    parts.append(
        cone(
            p2 - 0.05 * down,
            p2 + sh * down,
            0.07,
            rng.uniform(0.18, 0.25),
            pal("shade"),
            group="shade",
        )
    )
    return parts
