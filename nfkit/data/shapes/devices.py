"""Devices: display, speaker, phone, rifle."""

from __future__ import annotations

import numpy as np

from nfkit.data.primitives import (
    Part,
    box,
    cone,
    cylinder,
    rot_x,
    rot_z,
)
from nfkit.data.shapes._common import Palette, Rng


def display(rng: Rng) -> list[Part]:
    """Thin wide screen (dark panel in a frame) on a neck and a flat base."""
    pal = Palette(rng)
    w = rng.uniform(1.5, 2.0)
    h = w * rng.uniform(0.55, 0.68)
    t, lift = rng.uniform(0.05, 0.09), rng.uniform(0.35, 0.55)
    cy = lift + h / 2
    tilt = rng.uniform(-0.12, 0.05)
    parts = [box([0, cy, 0], [w, h, t], pal("frame"), rot=rot_x(tilt), group="frame")]
    bezel = rng.uniform(0.03, 0.06)
    screen_c = np.array([0, cy, 0]) + rot_x(tilt) @ np.array([0, 0, t / 2])
    parts.append(
        box(
            screen_c,
            [w - 2 * bezel, h - 2 * bezel, 0.02],
            pal("screen", dark=True),
            rot=rot_x(tilt),
            group="screen",
        )
    )
    parts.append(
        box(
            [0, (lift + 0.04) / 2 + 0.02, -0.1],
            [0.12, lift + 0.04, 0.06],
            pal("stand"),
            group="stand",
        )
    )
    base_w = rng.uniform(0.5, 0.8)
    if rng.random() < 0.5:
        parts.append(box([0, 0.02, -0.05], [base_w, 0.04, 0.4], pal("stand"), group="stand"))
    else:
        parts.append(
            cylinder(
                [0, 0, -0.05], [0, 0.04, -0.05], base_w / 2, pal("stand"), group="stand", squash=0.6
            )
        )
    return parts


def speaker(rng: Rng) -> list[Part]:
    """Tall box with round drivers (woofer, tweeter) on the front."""
    pal = Palette(rng)
    w, d = rng.uniform(0.5, 0.75), rng.uniform(0.5, 0.75)
    h = rng.uniform(1.2, 1.9)
    parts = [box([0, h / 2, 0], [w, h, d], pal("body"), group="body")]
    front = d / 2
    n = int(rng.integers(2, 4))
    radii = sorted(rng.uniform(0.1, 0.3, size=n) * w / 0.75 + 0.05, reverse=True)
    ys = np.linspace(h * 0.25, h * 0.82, n)
    for y, r in zip(ys, radii, strict=True):
        r = min(r, w * 0.42)
        parts.append(
            cylinder(
                [0, y, front - 0.01], [0, y, front + 0.03], r, pal("ring", dark=True), group="ring"
            )
        )
        parts.append(
            cone(
                [0, y, front + 0.03],
                [0, y, front + 0.03 + r * 0.35],
                r * 0.55,
                r * 0.15,
                pal("cone"),
                group="cone",
            )
        )
    return parts


def rifle(rng: Rng) -> list[Part]:
    """Long barrel, receiver, stock, pistol grip, magazine, optional scope."""
    pal = Palette(rng)
    rl, rh = rng.uniform(0.7, 0.9), rng.uniform(0.12, 0.16)
    parts = [box([0, 0, 0], [rl, rh, 0.08], pal("receiver"), group="receiver")]
    bl = rng.uniform(0.9, 1.3)
    parts.append(
        cylinder(
            [rl / 2 - 0.05, rh * 0.2, 0],
            [rl / 2 + bl, rh * 0.2, 0],
            rng.uniform(0.018, 0.03),
            pal("barrel", dark=True),
            group="barrel",
        )
    )
    parts.append(
        box([rl / 2 + 0.2, -0.01, 0], [0.45, rh * 0.7, 0.07], pal("handguard"), group="handguard")
    )
    sl, drop = rng.uniform(0.55, 0.75), rng.uniform(0.05, 0.12)
    ang = np.arctan2(drop, sl)
    parts.append(
        box(
            [-rl / 2 - sl / 2 + 0.05, -drop / 2 - 0.02, 0],
            [sl, rh * 1.3, 0.07],
            pal("stock"),
            rot=rot_z(ang),
            group="stock",
        )
    )
    parts.append(
        box(
            [-rl / 2 + 0.15, -rh / 2 - 0.12, 0],
            [0.09, 0.26, 0.06],
            pal("grip"),
            rot=rot_z(-0.35),
            group="grip",
        )
    )
    parts.append(
        box(
            [rl / 2 - 0.18, -rh / 2 - 0.15, 0],
            [0.12, 0.32, 0.05],
            pal("magazine", dark=True),
            rot=rot_z(-0.2),
            group="magazine",
        )
    )
    if rng.random() < 0.5:
        parts.append(
            cylinder(
                [-0.2, rh / 2 + 0.07, 0],
                [0.25, rh / 2 + 0.07, 0],
                0.04,
                pal("scope", dark=True),
                group="scope",
            )
        )
        parts.append(
            box([0, rh / 2 + 0.035, 0], [0.3, 0.05, 0.03], pal("scope", dark=True), group="scope")
        )
    return parts


def phone(rng: Rng) -> list[Part]:
    """Thin upright slab with rounded corners, a dark screen on the front, a camera bump."""
    pal = Palette(rng)
    w, h = rng.uniform(0.7, 0.85), rng.uniform(1.35, 1.7)
    t, cr = rng.uniform(0.06, 0.1), rng.uniform(0.06, 0.12)
    body = pal("body")
    parts = [
        box([0, h / 2, 0], [w - 2 * cr, h, t], body, group="body"),
        box([0, h / 2, 0], [w, h - 2 * cr, t], body, group="body"),
    ]
    for sx in (-1, 1):
        for sy in (0, 1):
            x, y = sx * (w / 2 - cr), cr if sy == 0 else h - cr
            parts.append(cylinder([x, y, -t / 2], [x, y, t / 2], cr, body, group="body"))
    b = rng.uniform(0.03, 0.06)
    parts.append(
        box(
            [0, h / 2, t / 2],
            [w - 2 * b, h - 2 * b - 0.08, 0.01],
            pal("screen", dark=True),
            group="screen",
        )
    )
    parts.append(
        cylinder(
            [-w / 2 + 0.18, h - 0.18, -t / 2],
            [-w / 2 + 0.18, h - 0.18, -t / 2 - 0.02],
            0.09,
            pal("camera", dark=True),
            group="camera",
        )
    )
    return parts
