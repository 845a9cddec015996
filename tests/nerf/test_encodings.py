"""Encodings against direct scalar transcriptions of tiny-cuda-nn's formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nfkit.nerf import encodings
from nfkit.nerf.specs import REGISTRY, ArchSpec, get_arch

F32 = np.float32
MASK = 0xFFFFFFFF
PRIMES = (1, 2654435761, 805459861)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- frequency
def test_frequency_encoding_follows_tcnn_output_ordering():
    n = 5
    u = torch.rand(7, 3, dtype=torch.float64, generator=_gen())
    out = encodings.frequency_encoding(u, n)
    assert out.shape == (7, 3 * 2 * n)
    for j in range(3 * 2 * n):
        dim, log2_freq, phase = j // (2 * n), (j // 2) % n, (j % 2) * math.pi / 2
        expected = torch.sin(u[:, dim] * 2.0**log2_freq * math.pi + phase)
        torch.testing.assert_close(out[:, j], expected, rtol=0, atol=1e-12)


def test_frequency_encoding_batched_shape_and_cos_entries():
    u = torch.rand(2, 11, 3, generator=_gen())
    out = encodings.frequency_encoding(u, 24)
    assert out.shape == (2, 11, 144)
    # entry 1 of dimension 1 is cos(u_y · π)
    torch.testing.assert_close(out[..., 2 * 24 + 1], torch.cos(u[..., 1] * math.pi), atol=1e-6, rtol=0)


def test_tcnn_sine_model_agrees_at_low_and_collapses_at_high_frequencies():
    u = torch.rand(500, 3, generator=_gen()) * 0.95 + 0.05  # u·2^29 has no fraction left
    exact = encodings.frequency_encoding(u, 48).view(500, 3, 48, 2)
    fast = encodings.frequency_encoding(u, 48, sin="tcnn").view(500, 3, 48, 2)
    torch.testing.assert_close(fast[:, :, :8], exact[:, :, :8], atol=1e-4, rtol=0)  # float32 argument rounding
    assert torch.all(fast[:, :, 30:] == 0)  # 2^f·π·u / 2π has no fractional part left in float32
    assert (fast[:, :, 30:] - exact[:, :, 30:]).abs().max() > 0.5  # where the exact sine is noise
    # the model itself: sin(2π·frac(rz(a / 2π)))
    a = torch.tensor([0.0, 1.0, -2.5, 100.0, 3.0e7, 2.0**40], dtype=torch.float32)
    model = encodings.tcnn_sinf(a)
    torch.testing.assert_close(model[:4], torch.sin(a[:4]), atol=1e-5, rtol=0)
    assert model[5].item() == 0.0
    with pytest.raises(ValueError, match="unknown sine"):
        encodings.frequency_encoding(u, 2, sin="fast")


def _hardware_sinf():
    """CUDA's sin.approx.f32 through a Triton inline-asm kernel, or None where unavailable."""
    if not torch.cuda.is_available():
        return None
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None

    @triton.jit
    def kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask)
        y = tl.inline_asm_elementwise("sin.approx.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1)
        tl.store(y_ptr + offs, y, mask=mask)

    def run(a: torch.Tensor) -> torch.Tensor:
        x = a.cuda().contiguous()
        y = torch.empty_like(x)
        kernel[(triton.cdiv(x.numel(), 1024),)](x, y, x.numel(), BLOCK=1024)
        return y.cpu()

    return run


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (and triton) to run __sinf")
def test_tcnn_sine_model_matches_the_gpu_instruction():
    hw = _hardware_sinf()
    if hw is None:
        pytest.skip("triton is not importable")
    u = torch.rand(4096, 3, generator=_gen())
    f = torch.arange(48, dtype=torch.float64)
    arg = (u.double()[..., None, None] * torch.exp2(f)[:, None] * encodings._PI32
           + torch.tensor([0.0, encodings._HALF_PI32], dtype=torch.float64)).float()
    torch.testing.assert_close(encodings.tcnn_sinf(arg), hw(arg), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- hash grid
def _scalar_levels(spec: ArchSpec):
    """GridEncodingTemplated's constructor, transcribed (float32 arithmetic)."""
    levels, offset = [], 0
    for i in range(spec.hash_levels):
        scale = F32(F32(np.exp2(F32(i) * F32(np.log2(F32(spec.hash_per_level_scale))))) * F32(spec.hash_base_res)) - F32(1)
        res = int(math.ceil(scale)) + 1
        params_in_level = (res**3 + 7) // 8 * 8  # next_multiple(res^3, 8u)
        params_in_level = min(params_in_level, 1 << spec.hash_log2_size)
        levels.append((scale, res, params_in_level, offset))
        offset += params_in_level
    return levels


def _scalar_grid_index(size: int, res: int, corner: list[int]) -> int:
    """tcnn grid_index (uint32 arithmetic), transcribed."""
    stride, index = 1, 0
    for d in range(3):
        if not stride <= size:
            break
        index = (index + corner[d] * stride) & MASK
        stride = (stride * res) & MASK
    if size < stride:
        index = 0
        for d in range(3):
            index ^= (corner[d] * PRIMES[d]) & MASK
    return index % size


def _scalar_lookup(spec: ArchSpec, x: list[float]):
    """kernel_grid for one position: per level, the 8 (global entry, weight) pairs."""
    out = []
    for scale, res, size, offset in _scalar_levels(spec):
        pos, grid = [], []
        for d in range(3):
            p = F32(float(F32(x[d])) * float(scale) + 0.5)  # fmaf: one rounding
            g = math.floor(p)
            pos.append(F32(p - F32(g)))
            grid.append(g)
        pairs = []
        for k in range(8):
            weight = F32(1)
            corner = []
            for d in range(3):
                if (k >> d) & 1 == 0:
                    weight = F32(weight * (F32(1) - pos[d]))
                    corner.append((grid[d]) & MASK)
                else:
                    weight = F32(weight * pos[d])
                    corner.append((grid[d] + 1) & MASK)
            pairs.append((offset + _scalar_grid_index(size, res, corner), float(weight)))
        out.append(pairs)
    return out


def _points(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, 3, generator=g)
    edge = torch.tensor(
        [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.25, 0.125], [1 / 15, 2 / 31, 3 / 63],
         [-0.03, 0.5, 1.04], [0.999999, 1e-7, 0.3]]
    )
    return torch.cat([pts, edge])


#: levels 16 (dense, 4096 entries), 24 (dense, 13824: not a power of two), 36 and 54 (hashed)
ODD = ArchSpec("odd", "hash", hash_log2_size=14, hash_per_level_scale=1.5)


@pytest.mark.parametrize("name", ["hash", "hash-3n", "hash-11t", "odd"])
def test_hash_indices_and_weights_equal_scalar_tcnn(name):
    spec = ODD if name == "odd" else get_arch(name)
    pts = _points(40)
    # vertices all in range (int64 fast path) and with wrapped negative vertices (uint32 path)
    inside = encodings.hash_grid_indices(spec, pts[(pts >= 0).all(-1)])
    entries, weights = encodings.hash_grid_indices(spec, pts)
    assert entries.shape == (len(pts), spec.hash_levels, 8) and entries.dtype == torch.int64
    assert torch.equal(inside[0], entries[(pts >= 0).all(-1)])
    assert torch.equal(inside[1], weights[(pts >= 0).all(-1)])
    levels = encodings.hash_levels(spec)
    assert any(lv.dense for lv in levels) == (name != "hash-11t")
    if name == "odd":
        assert [(lv.resolution, lv.size, lv.dense) for lv in levels] == [
            (16, 4096, True), (24, 13824, True), (36, 16384, False), (54, 16384, False)]
    assert any(not lv.dense for lv in levels)
    for i, x in enumerate(pts.tolist()):
        for level, pairs in enumerate(_scalar_lookup(spec, x)):
            assert entries[i, level].tolist() == [e for e, _ in pairs], (name, x, level)
            assert weights[i, level].tolist() == [w for _, w in pairs], (name, x, level)


def test_hash_weights_partition_unity_and_dense_level_is_xyz_order():
    spec = get_arch("hash")
    pts = torch.rand(100, 3, generator=_gen())
    entries, weights = encodings.hash_grid_indices(spec, pts)
    torch.testing.assert_close(weights.sum(-1), torch.ones(100, spec.hash_levels))
    # level 0 is dense (16^3 = 4096 = T): corner 0 of a point at vertex (i, j, k) is i + 16 j + 256 k
    v = torch.tensor([[3, 7, 11]])
    u = (v.float() - 0.5 + 0.25) / 15.0  # pos = u·15 + 0.5 lands inside cell (3, 7, 11)
    e, _ = encodings.hash_grid_indices(spec, u)
    assert e[0, 0, 0].item() == 3 + 7 * 16 + 11 * 256
    assert e[0, 0, 1].item() == 4 + 7 * 16 + 11 * 256  # corner 1 = +x
    assert e[0, 0, 4].item() == 3 + 7 * 16 + 12 * 256  # corner 4 = +z


def test_hash_level_sizes_match_spec_and_tcnn():
    for spec in REGISTRY.values():
        if spec.family != "hash":
            continue
        levels = encodings.hash_levels(spec)
        scalar = _scalar_levels(spec)
        assert [lv.size for lv in levels] == spec.hash_level_sizes() == [s for _, _, s, _ in scalar]
        assert [lv.resolution for lv in levels] == spec.hash_level_resolutions()
        assert [lv.offset for lv in levels] == [o for *_, o in scalar]
        assert spec.param_shapes()["hash_table"] == (sum(spec.hash_level_sizes()) * spec.hash_features,)
    # non-power-of-two scale (finest 128 over 3 levels): tcnn's float32 levels 16, 46, 128
    odd = ArchSpec("h3", "hash", hash_levels=3, hash_per_level_scale=math.sqrt(8.0))
    assert [lv.resolution for lv in encodings.hash_levels(odd)] == [16, 46, 128]
    assert [lv.size for lv in encodings.hash_levels(odd)] == [4096, 4096, 4096]


@pytest.mark.parametrize("name", ["hash-3n", "odd"])
def test_hash_encoding_is_weighted_sum_of_table_features(name):
    spec = ODD if name == "odd" else get_arch(name)
    n_params = spec.param_shapes()["hash_table"][0]
    table = torch.randn(2, n_params, dtype=torch.float64, generator=_gen())
    u = torch.stack([_points(10, 1), _points(10, 2)])
    out = encodings.hash_grid_encoding(spec, table, u)
    assert out.shape == (2, 16, spec.hash_levels * spec.hash_features)
    for b in range(2):
        for i, x in enumerate(u[b].tolist()):
            for level, pairs in enumerate(_scalar_lookup(spec, x)):
                for f in range(spec.hash_features):
                    expected = sum(w * table[b, e * spec.hash_features + f].item() for e, w in pairs)
                    assert out[b, i, level * spec.hash_features + f].item() == pytest.approx(expected, abs=1e-9)


def test_hash_encoding_gradient_reaches_only_touched_entries():
    spec = get_arch("hash")
    table = torch.zeros(1, spec.param_shapes()["hash_table"][0], requires_grad=True)
    u = torch.tensor([[[0.31, 0.62, 0.93]]])
    encodings.hash_grid_encoding(spec, table, u).sum().backward()
    entries, weights = encodings.hash_grid_indices(spec, u[0])
    touched = torch.zeros_like(table[0])
    for e, w in zip(entries.flatten().tolist(), weights.flatten().tolist(), strict=True):
        for f in range(spec.hash_features):
            touched[e * spec.hash_features + f] += w
    torch.testing.assert_close(table.grad[0], touched)


# ----------------------------------------------------------------------------- tri-plane
# The reference tri-plane (gmnerf nf2vec/nerf/triplane.py): planes xy, xz, yz in that order,
# sampled by grid_sample at coords[..., [0, 1]], [..., [0, 2]], [..., [1, 2]]: the first axis of
# a pair runs along the plane's width, the second along its height. Written out here, not read
# from nfkit's own table, so a wrong table in nfkit fails these tests.
REFERENCE_PLANES = ((0, 1), (0, 2), (1, 2))


def _coords(r: int) -> torch.Tensor:
    return -1.0 + 2.0 * torch.arange(r, dtype=torch.float64) / (r - 1)


def test_triplane_interpolates_a_linear_field_exactly():
    r, c = 9, 4
    coef = torch.randn(3, c, 3, dtype=torch.float64, generator=_gen())  # per plane, channel: a·(width coord) + b·(height coord) + d
    s_coord = _coords(r).view(1, r)  # width axis s
    r_coord = _coords(r).view(r, 1)  # height axis r
    planes = torch.empty(1, 3, c, r, r, dtype=torch.float64)
    for p in range(3):
        for ch in range(c):
            a, b, d = coef[p, ch]
            planes[0, p, ch] = a * s_coord + b * r_coord + d
    g = torch.rand(1, 50, 3, dtype=torch.float64, generator=_gen()) * 2 - 1
    out = encodings.triplane_features(planes, g)
    expected = torch.zeros(1, 50, c, dtype=torch.float64)
    for p, (a0, a1) in enumerate(REFERENCE_PLANES):
        expected += coef[p, :, 0] * g[..., a0, None] + coef[p, :, 1] * g[..., a1, None] + coef[p, :, 2]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_triplane_texels_sit_at_documented_positions():
    r, c = 5, 2
    coords = _coords(r)
    for p, (a0, a1) in enumerate(REFERENCE_PLANES):
        planes = torch.zeros(1, 3, c, r, r, dtype=torch.float64)
        planes[0, p, 1, 3, 1] = 7.0  # height index 3, width index 1
        g = torch.zeros(1, 1, 3, dtype=torch.float64)
        g[0, 0, a0] = coords[1]  # first plane axis runs along the width
        g[0, 0, a1] = coords[3]
        other = 3 - a0 - a1
        g[0, 0, other] = 0.37  # the axis normal to the plane does not matter
        out = encodings.triplane_features(planes, g)
        assert out[0, 0].tolist() == [0.0, 7.0]
        # swapping the two in-plane coordinates misses the texel
        g2 = g.clone()
        g2[0, 0, a0], g2[0, 0, a1] = g[0, 0, a1], g[0, 0, a0]
        assert encodings.triplane_features(planes, g2)[0, 0, 1].item() == 0.0


def test_triplane_corners_and_zero_padding_outside():
    planes = torch.randn(2, 3, 3, 4, 4, generator=_gen())
    g = torch.tensor([[[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]]).repeat(2, 1, 1)
    out = encodings.triplane_features(planes, g)
    torch.testing.assert_close(out[:, 0], planes[:, :, :, 0, 0].sum(1))
    torch.testing.assert_close(out[:, 1], planes[:, :, :, -1, -1].sum(1))
    far = encodings.triplane_features(planes, torch.full((2, 1, 3), 3.0))
    assert torch.all(far == 0)


def test_encodings_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, 3, C, R, R\)"):
        encodings.triplane_features(torch.zeros(1, 2, 3, 4, 4), torch.zeros(1, 5, 3))
    spec = get_arch("hash")
    with pytest.raises(ValueError, match="hash table"):
        encodings.hash_grid_encoding(spec, torch.zeros(1, 10), torch.zeros(1, 5, 3))
    with pytest.raises(ValueError, match="no hash grid"):
        encodings.hash_levels(get_arch("mlp"))
