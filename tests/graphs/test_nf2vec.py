"""The nf2vec row-stacked input (tiny-cuda-nn flat layout, padded, reshaped to rows of width H)."""

import numpy as np
import pytest

from nfkit.graphs.nf2vec import nf2vec_num_rows, nf2vec_rows
from nfkit.nerf.specs import REGISTRY

from .test_graph_roundtrip import random_params


def test_mlp_rows_follow_nf2vec():
    spec = REGISTRY["mlp"]
    params = random_params(spec)
    rows = nf2vec_rows(spec, params)
    # nf2vec: 64·144 + 2·64·64 + 16·64 (tcnn output padded to 16) + (64 − 16)·64 zeros = 336 × 64
    assert rows.shape == (336, 64) and rows.dtype == np.float32
    assert nf2vec_num_rows(spec) == 336
    # a plain reshape of the row-major (out, in) matrices, as nf2vec does (not a transpose)
    np.testing.assert_array_equal(rows[:144].ravel(), params["mlp.0"].ravel())
    np.testing.assert_array_equal(rows[144:208], params["mlp.1"])
    np.testing.assert_array_equal(rows[208:272], params["mlp.2"])
    np.testing.assert_array_equal(rows[272:276], params["mlp.3"])
    assert not rows[276:].any()  # tcnn padding rows 4..15 (not stored by nfkit) + nf2vec's zeros


def test_hash_input_padding_and_grid_prefix():
    spec = REGISTRY["hash-11t"]
    params = random_params(spec)
    rows = nf2vec_rows(spec, params)
    grid_rows = 4 * 2048 * 2 // 64
    assert rows.shape == (grid_rows + 16 + 64 + 64 + 64, 64)
    np.testing.assert_array_equal(rows[:grid_rows].ravel(), params["hash_table"])
    first = rows[grid_rows : grid_rows + 16].reshape(64, 16)  # input 8 padded to 16 by tcnn
    assert params["mlp.0"].shape == (64, 16)  # the canonical layer keeps tcnn's padding columns
    np.testing.assert_array_equal(first, params["mlp.0"])
    assert first[:, 8:].all()  # the padding weights (a bias) are fed to nf2vec as tcnn stores them
    np.testing.assert_array_equal(rows[grid_rows + 16 : grid_rows + 144].ravel(), np.concatenate([params["mlp.1"].ravel(), params["mlp.2"].ravel()]))
    np.testing.assert_array_equal(rows[grid_rows + 144 : grid_rows + 148], params["mlp.3"])
    assert not rows[grid_rows + 148 :].any()


def test_other_widths_and_errors():
    spec = REGISTRY["tri-16w"]
    params = random_params(spec)
    rows = nf2vec_rows(spec, params, width=32)
    assert rows.shape == (nf2vec_num_rows(spec, 32), 32)
    flat = rows.ravel()
    n_grid = params["triplane"].size
    np.testing.assert_array_equal(flat[:n_grid], params["triplane"].ravel())
    np.testing.assert_array_equal(flat[n_grid : n_grid + 64 * 304], params["mlp.0"].ravel())
    with pytest.raises(ValueError, match="positive"):
        nf2vec_rows(spec, params, width=0)
