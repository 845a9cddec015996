"""The nf2vec encoder's input: a NeRF's weights stacked into rows of width H (seeds 001, 003).

nf2vec (reference ``CVLAB-Unibo/nf2vec``, ``nerf2vec/utils.py:get_mlp_params_as_matrix``) takes
tiny-cuda-nn's flat parameter vector of a FullyFusedMLP, appends ``(H - 16)·H`` zeros and reshapes
it to ``(-1, H)`` (H = hidden width). In tiny-cuda-nn's vector each weight matrix is stored
row-major as (out, in) with the input width padded to a multiple of 16 and the output layer
padded from 4 to 16 rows; nf2vec's extra zeros complete the output layer to H rows. The reshape is
a plain reshape, not a transpose: for the first layer (64, 144) each 64-wide row is a run of 64
consecutive weights of W (row-major), exactly as nf2vec feeds it.

nfkit's canonical ``mlp.{i}`` tensors are those (out, in) matrices, the first layer's input
padding columns included (``ArchSpec.mlp_input_dim``), minus the output padding: this module
appends the output padding rows (zero: nfkit stores only the 4 used rows) and then follows
nf2vec. For the paper's MLP architecture: 144 + 64 + 64 + 64 = 336 rows of width 64.

nf2vec itself is defined for the MLP family only. For ``tri`` and ``hash`` (nfkit's extension,
so a single-architecture baseline can run on any shard) the grid parameters, flattened in their
canonical order and zero-padded to a multiple of the width, are stacked before the MLP rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nfkit.nerf.specs import TCNN_ALIGN, ArchSpec


def _ceil_to(n: int, k: int) -> int:
    return -(-n // k) * k


def _padded_mlp_shapes(spec: ArchSpec) -> list[tuple[int, int]]:
    """The canonical shapes with the last layer's rows padded: tcnn pads 4 -> 16 and nf2vec
    appends (H - 16)·H zeros, so that block becomes max(16, H) rows."""
    shapes = spec.mlp_shapes()
    o, n_in = shapes[-1]
    return [*shapes[:-1], (max(_ceil_to(o, TCNN_ALIGN), spec.hidden_dim), n_in)]


def _grid_size(spec: ArchSpec) -> int:
    shapes = spec.param_shapes()
    name = {"tri": "triplane", "hash": "hash_table"}.get(spec.family)
    return int(np.prod(shapes[name])) if name else 0


def nf2vec_num_rows(spec: ArchSpec, width: int | None = None) -> int:
    """Number of rows of :func:`nf2vec_rows` for ``spec`` (``width`` defaults to hidden_dim)."""
    width = spec.hidden_dim if width is None else int(width)
    if width < 1:
        raise ValueError(f"nf2vec width must be positive, got {width}")
    grid = _ceil_to(_grid_size(spec), width)
    mlp = sum(o * i for o, i in _padded_mlp_shapes(spec))
    return (grid + _ceil_to(mlp, width)) // width


def nf2vec_rows(
    spec: ArchSpec, params: Mapping[str, np.ndarray], width: int | None = None
) -> np.ndarray:
    """The weights of one NeRF as nf2vec's row-stacked matrix.

    Shapes: params: the canonical tensors of ``spec`` -> (n_rows, width) float32, n_rows =
    :func:`nf2vec_num_rows`. ``width`` defaults to the MLP's hidden dimension (nf2vec's H).
    """
    width = spec.hidden_dim if width is None else int(width)
    n_rows = nf2vec_num_rows(spec, width)
    out = np.zeros(n_rows * width, dtype=np.float32)
    pos = 0
    grid = _grid_size(spec)
    if grid:
        name = "triplane" if spec.family == "tri" else "hash_table"
        out[:grid] = np.asarray(params[name], dtype=np.float32).ravel()
        pos = _ceil_to(grid, width)
    for i, (o, n_in) in enumerate(_padded_mlp_shapes(spec)):
        w = np.asarray(params[f"mlp.{i}"], dtype=np.float32)
        if w.shape != tuple(spec.mlp_shapes()[i]):
            raise ValueError(
                f"{spec.name}: mlp.{i} has shape {w.shape}, expected {spec.mlp_shapes()[i]}"
            )
        block = out[pos : pos + o * n_in].reshape(o, n_in)
        block[: w.shape[0], : w.shape[1]] = w
        pos += o * n_in
    return out.reshape(n_rows, width)
