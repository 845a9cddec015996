"""Hash-grid level scales, resolutions and sizes for per-level scales that are not powers of
two, derived here from tiny-cuda-nn's formulas (``common_device.h``: ``grid_scale``,
``grid_resolution``; ``encodings/grid.h``: the level sizes computed on the host).

tcnn's host code: ``log2 = std::log2(per_level_scale)`` (float), ``scale = exp2f(level * log2)
* base_resolution - 1.0f``, ``resolution = (uint32_t)ceilf(scale) + 1``, level size
``min(next_multiple(resolution^3, 8), 2^log2_hashmap_size)``. ``log2f`` / ``exp2f`` are
evaluated here in float64 and rounded once to float32 (the correctly rounded values).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nfkit.nerf.encodings import hash_levels
from nfkit.nerf.specs import ArchSpec

f32 = np.float32


def _tcnn_levels(base: int, n_levels: int, per_level_scale: float, log2_size: int):
    log2_scale = f32(math.log2(float(f32(per_level_scale))))
    scales, resolutions, sizes = [], [], []
    for level in range(n_levels):
        x = f32(f32(level) * log2_scale)
        scale = f32(f32(2.0 ** float(x)) * f32(base)) - f32(1.0)
        res = int(math.ceil(float(scale))) + 1
        scales.append(float(scale))
        resolutions.append(res)
        sizes.append(min((res**3 + 7) // 8 * 8, 2**log2_size))
    return scales, resolutions, sizes


def _configs():
    """instant-ngp's rule b = exp(ln(N_max / N_min) / (L − 1)) over a few grids, plus the
    HASH-3N reading that keeps the finest resolution at 128 (b = 2^1.5)."""
    out = [(4, 8, 1.4859942891369482, 12), (16, 3, 2.0**1.5, 12), (16, 3, 2.8284271247461903, 12)]
    for base in (2, 4, 16):
        for n_levels in (3, 5, 8, 16):
            for finest in (64, 100, 512, 2048):
                out.append((base, n_levels, math.exp(math.log(finest / base) / (n_levels - 1)), 15))
    return out


@pytest.mark.parametrize("base,n_levels,scale,log2_size", _configs())
def test_levels_follow_tcnn_host_arithmetic(base, n_levels, scale, log2_size):
    spec = ArchSpec("h", "hash", hash_levels=n_levels, hash_base_res=base, hash_per_level_scale=scale,
                    hash_log2_size=log2_size)
    want_scales, want_res, want_sizes = _tcnn_levels(base, n_levels, scale, log2_size)
    assert spec.hash_level_scales() == want_scales
    assert spec.hash_level_resolutions() == want_res
    assert spec.hash_level_sizes() == want_sizes
    assert [lv.resolution for lv in hash_levels(spec)] == want_res
    assert [lv.size for lv in hash_levels(spec)] == want_sizes
    assert spec.param_shapes()["hash_table"] == (sum(want_sizes) * spec.hash_features,)


def test_the_reported_configuration_has_finest_resolution_64():
    """Base 4, 8 levels, scale 2^(4/7): 7·log2(b) rounds to exactly 4 in float32, so the finest
    scale is 4·16 − 1 = 63 and the resolution 64; numpy's float32 log2 is one ulp high and
    gives 65 (the defect this pins)."""
    spec = ArchSpec("h", "hash", hash_levels=8, hash_base_res=4, hash_per_level_scale=1.4859942891369482)
    assert spec.hash_level_scales()[-1] == 63.0
    assert spec.hash_level_resolutions()[-1] == 64
    numpy_way = np.exp2(f32(7) * np.log2(f32(1.4859942891369482))) * f32(4) - f32(1)
    if numpy_way > 63.0:  # numpy's SIMD log2 on this machine: the old, wrong result
        assert int(np.ceil(numpy_way)) + 1 == 65
