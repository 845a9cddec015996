"""Parameter graph of a tri-plane (Lim et al.; seed 000 Appendix A, Fig. 5 right).

Canonical layout ``triplane[p, c, r, s]`` (3, C, R, R), planes ``p`` = xy, xz, yz. Each plane
is sampled with ``grid_sample(align_corners=True)``: grid coordinate 0 indexes the last axis
``s`` (width), coordinate 1 the axis ``r`` (height); the plane's first named axis is coordinate
0 (xy: x, y; xz: x, z; yz: y, z). Hence value ``[p, c, r, s]`` lives at

- xy: (x, y, z) = (u_s, u_r, 0)
- xz: (x, y, z) = (u_s, 0, u_r)
- yz: (x, y, z) = (0, u_s, u_r)

with ``u_k = -1 + 2k / (R - 1)``; the coordinate normal to the plane is 0 (seed 000: i = 0 on
yz, j = 0 on xz, k = 0 on xy).

Graph: one spatial node per location (3R², id offset ``p·R² + r·R + s``, ordered by that id),
one channel node per channel (C, unordered); an edge from every spatial node to every channel
node carrying ``triplane[p, c, r, s]`` and the location (x, y, z) of *that same value*. Edges
follow the canonical (p, c, r, s) order, and each edge's source, target, value and position are
computed from the same (p, c, r, s), so they cannot drift apart (the public reference code
orders edges spatial-major but flattens values and positions channel-major).
"""

from __future__ import annotations

import numpy as np

from nfkit.graphs.schema import GraphAssembler, ParamBlock

PLANES: tuple[str, ...] = ("xy", "xz", "yz")
#: for each plane: which of (x, y, z) grid coordinate 0 (the s axis) and 1 (the r axis) are
PLANE_AXES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))


def plane_coords(res: int) -> np.ndarray:
    """The R evenly spaced sample coordinates in [-1, 1] (align_corners=True). Shape (R,)."""
    if res == 1:
        return np.zeros(1, dtype=np.float64)
    return -1.0 + 2.0 * np.arange(res, dtype=np.float64) / (res - 1)


def triplane_positions(res: int) -> np.ndarray:
    """Position (x, y, z) of the value at ``[p, :, r, s]``. Shape (3, R, R, 3) float32."""
    u = plane_coords(res)
    pos = np.zeros((3, res, res, 3), dtype=np.float64)
    for p, (axis_s, axis_r) in enumerate(PLANE_AXES):
        pos[p, :, :, axis_s] = u[None, :]  # varies with s (last axis)
        pos[p, :, :, axis_r] = u[:, None]  # varies with r
    return pos.astype(np.float32)


def add_triplane(
    asm: GraphAssembler, channels: int, res: int, layer: int = 0
) -> tuple[int, ParamBlock]:
    """Add spatial nodes (layer ``layer``), channel nodes (layer ``layer + 1``) and the edges.

    Returns (id of the first channel node, the block of the ``triplane`` tensor).
    """
    n_loc = 3 * res * res
    spatial_start = asm.add_nodes(n_loc, layer, "triplane_spatial", index=np.arange(n_loc))
    chan_start = asm.add_nodes(channels, layer + 1, "triplane_channel")
    p, c, r, s = (
        a.ravel()
        for a in np.meshgrid(
            np.arange(3), np.arange(channels), np.arange(res), np.arange(res), indexing="ij"
        )
    )
    loc = (p * res + r) * res + s
    pos = triplane_positions(res)[p, r, s]
    start, stop = asm.add_edges(spatial_start + loc, chan_start + c, layer, "triplane", pos=pos)
    block = ParamBlock(
        "triplane",
        (3, channels, res, res),
        "triplane",
        "triplane",
        layer,
        start,
        stop,
        spatial_start,
        chan_start,
        n_loc,
        (channels, res),
    )
    return chan_start, block


def triplane_flat_index(block: ParamBlock, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Flat position in ``triplane`` (3, C, R, R) of each edge; ValueError on a foreign edge."""
    channels, res = block.extra
    loc = src - block.src_start
    c = dst - block.dst_start
    if np.any((loc < 0) | (loc >= 3 * res * res) | (c < 0) | (c >= channels)):
        raise ValueError("triplane: an edge does not join a spatial node to a channel node")
    p, rs = np.divmod(loc, res * res)
    r, s = np.divmod(rs, res)
    return ((p * channels + c) * res + r) * res + s
