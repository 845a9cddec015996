"""Input encodings of the three NeRF families, in pure torch, batched over NeRFs.

Every function takes positions already normalised to the object box (``[0, 1]^3`` for the
frequency and hash encodings, ``[-1, 1]^3`` for the tri-plane, as the reference code does) with
a leading NeRF batch dimension, and follows tiny-cuda-nn (tcnn) or the authors' reference code
exactly; the formulas are written next to each function.

- :func:`frequency_encoding` — tcnn ``Frequency`` (``encodings/frequency.h``).
- :func:`triplane_features` — the tri-plane of Cardace et al. as in the authors' code
  (``gmnerf/nf2vec/nerf/triplane.py``): bilinear ``grid_sample(align_corners=True)``, planes
  summed.
- :func:`hash_grid_encoding` — tcnn ``HashGrid`` (``encodings/grid.h``), linear interpolation,
  with :func:`hash_grid_indices` exposing the (parameter index, weight) pairs it uses.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nfkit.nerf import native
from nfkit.nerf.specs import ArchSpec

__all__ = [
    "HASH_PRIMES",
    "HashLevel",
    "frequency_encoding",
    "tcnn_sinf",
    "hash_grid_encoding",
    "hash_grid_indices",
    "hash_levels",
    "triplane_features",
]

_MASK32 = 0xFFFFFFFF
#: tcnn ``fast_hash`` primes for dimensions x, y, z (``grid.h``).
HASH_PRIMES: tuple[int, int, int] = (1, 2654435761, 805459861)
#: planes of the tri-plane, in storage order, as pairs of (x, y, z) axes; the first axis of a
#: pair is grid_sample's coordinate 0 (the plane's last, "width" axis), the second its
#: coordinate 1 (the "height" axis).
PLANE_AXES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))


# --------------------------------------------------------------------------- frequency
_PI32 = float(np.float32(math.pi))
_HALF_PI32 = float(np.float32(math.pi / 2))
_INV_2PI32 = float(np.float32(1.0 / (2.0 * math.pi)))


def frequency_encoding(u: Tensor, n_frequencies: int, sin: str = "exact") -> Tensor:
    """tcnn ``Frequency`` encoding of positions ``u``.

    Output ``j`` (of ``D·2·n``) encodes input dimension ``j // (2n)`` at log2-frequency
    ``f = (j // 2) % n`` with phase ``(j % 2)·π/2``: ``sin(u·2^f·π + phase)``, i.e. per input
    dimension, per frequency, (sin, cos).

    ``sin="exact"`` evaluates the sine accurately (in float32: ``torch.sin``, or on the CPU
    without gradient :func:`nfkit.nerf.native.sin_`, the same values to about 1e-7 and several
    times faster on the high bands' large arguments). tcnn evaluates
    ``__sinf(fmaf(u·2^f, π, phase))``, CUDA's fast sine, which has no real argument reduction:
    for large arguments (log2-frequencies above ~16 for u in [0, 1]) its values are quantised
    and from ~28 on they are 0. ``sin="tcnn"`` reproduces that with :func:`tcnn_sinf` (a model
    of the hardware instruction, slower: float64 arithmetic).

    Shapes: ``u`` (..., D) -> (..., D·2·n_frequencies).
    """
    if n_frequencies <= 0:
        return u.new_zeros(*u.shape[:-1], 0)
    if sin == "tcnn":
        f = torch.arange(n_frequencies, device=u.device, dtype=torch.float64)
        scaled = u.detach().to(torch.float32).double().unsqueeze(-1) * torch.exp2(f)  # scalbnf: exact
        phase = torch.tensor([0.0, _HALF_PI32], device=u.device, dtype=torch.float64)
        arg = (scaled.unsqueeze(-1) * _PI32 + phase).float()  # fmaf(x, PI, phase): one rounding
        return tcnn_sinf(arg).to(u.dtype).flatten(-3)
    if sin != "exact":
        raise ValueError(f"unknown sine {sin!r}; expected 'exact' or 'tcnn'")
    f = torch.arange(n_frequencies, device=u.device, dtype=u.dtype)
    scale = (torch.exp2(f) * math.pi).repeat_interleave(2)  # (2n,)
    phase = torch.tensor([0.0, math.pi / 2], device=u.device, dtype=u.dtype).repeat(n_frequencies)
    arg = torch.addcmul(phase, u.unsqueeze(-1), scale)  # (..., D, 2n)
    out = torch.sin(arg) if arg.requires_grad else native.sin_(arg)  # in place: one big buffer less
    return out.flatten(-2)


def tcnn_sinf(a: Tensor) -> Tensor:
    """A model of CUDA's ``__sinf`` (PTX ``sin.approx.f32``) for float32 ``a``.

    The instruction scales by 1/(2π) with a float32 multiply rounded toward zero and takes
    the sine of the fractional turn (``FMUL.RZ`` + ``MUFU.SIN``): ``sin(2π·frac(rz(a/2π)))``.
    The hardware's own approximation error (~2^-21 absolute) is not modelled. No gradient.
    """
    p = a.detach().to(torch.float32).double() * _INV_2PI32  # exact: 24-bit × 24-bit
    t = p.float()
    t = torch.where(t.double().abs() > p.abs(), torch.nextafter(t, torch.zeros_like(t)), t)  # RZ
    turns = t - torch.floor(t)  # exact in float32
    return torch.sin(turns.double() * (2.0 * math.pi)).float()


# --------------------------------------------------------------------------- tri-plane
def triplane_features(planes: Tensor, g: Tensor) -> Tensor:
    """Sum of the three planes' bilinear samples at ``g`` (the reference tri-plane).

    ``planes[b, p, c, r, s]``: plane ``p`` in (xy, xz, yz), channel ``c``, height ``r``, width
    ``s``. Plane ``p`` with axes ``(a0, a1) = PLANE_AXES[p]`` is sampled by
    ``F.grid_sample(align_corners=True)`` at grid ``(g[a0], g[a1])``: coordinate ``g[a0]`` runs
    along the width ``s`` and ``g[a1]`` along the height ``r``, so the texel ``[r, s]`` sits at
    ``g[a0] = -1 + 2s/(R-1)``, ``g[a1] = -1 + 2r/(R-1)``. Outside ``[-1, 1]`` the planes read 0
    (grid_sample's zero padding), as in the reference.

    Shapes: ``planes`` (B, 3, C, R, R), ``g`` (B, N, 3) in [-1, 1] -> (B, N, C).
    """
    if planes.dim() != 5 or planes.shape[1] != 3:
        raise ValueError(f"tri-plane parameters must have shape (B, 3, C, R, R), got {tuple(planes.shape)}")
    if g.dim() != 3 or g.shape[-1] != 3 or g.shape[0] != planes.shape[0]:
        raise ValueError(f"positions must have shape (B={planes.shape[0]}, N, 3), got {tuple(g.shape)}")
    b, _, c, r, s = planes.shape
    n = g.shape[1]
    grid = torch.stack([g[..., list(axes)] for axes in PLANE_AXES], dim=1)  # (B, 3, N, 2)
    sampled = F.grid_sample(
        planes.reshape(b * 3, c, r, s),
        grid.reshape(b * 3, 1, n, 2).to(planes.dtype),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )  # (B*3, C, 1, N)
    return sampled.view(b, 3, c, n).sum(dim=1).transpose(1, 2)


# --------------------------------------------------------------------------- hash grid
@dataclass(frozen=True)
class HashLevel:
    """One level of a tcnn hash grid, computed as tcnn computes it (float32 arithmetic)."""

    scale: float
    """``exp2f(l·log2f(per_level_scale))·base_resolution − 1`` (a float32 value)."""
    resolution: int
    """``ceil(scale) + 1`` vertices per axis."""
    size: int
    """Table entries of the level: ``min(next_multiple(res³, 8), 2^log2_size)``."""
    offset: int
    """Index of the level's first entry in the whole table (entries, not floats)."""
    dense: bool
    """``res³ <= size``: indexed ``x + y·res + z·res²``; else by the spatial hash."""


@functools.lru_cache(maxsize=64)
def hash_levels(spec: ArchSpec) -> tuple[HashLevel, ...]:
    """The levels of ``spec``'s hash grid (tcnn ``GridEncodingTemplated`` / ``kernel_grid``)."""
    if spec.family != "hash":
        raise ValueError(f"architecture {spec.name!r} has no hash grid (family {spec.family!r})")
    table = 1 << spec.hash_log2_size
    levels, offset = [], 0
    # scale and resolution: ArchSpec computes them with tcnn's float32 arithmetic
    for scale, res in zip(spec.hash_level_scales(), spec.hash_level_resolutions(), strict=True):
        size = min((res**3 + 7) // 8 * 8, table)  # tcnn's order: round up to 8, then cap at T
        # grid_index(): strides grow while stride <= size; hashed iff size < final stride
        stride = 1
        for _ in range(3):
            if stride > size:
                break
            stride = (stride * res) & _MASK32
        levels.append(HashLevel(float(scale), res, size, offset, dense=not size < stride))
        offset += size
    return tuple(levels)


def _mul_u32(a: Tensor, k: int) -> Tensor:
    """``(a · k) mod 2^32`` for int64 ``a`` in [0, 2^32) and a constant ``k`` < 2^32, no overflow."""
    lo, hi = k & 0xFFFF, k >> 16
    return (a * lo + (((a * hi) & 0xFFFF) << 16)) & _MASK32


def _corner_combine(a: Tensor, b: Tensor, c: Tensor, op, out: Tensor) -> Tensor:
    """Combine per-axis terms (..., 2) of x, y, z into the 8 corners ``out`` (..., 8), corner
    ``k = x_bit + 2·y_bit + 4·z_bit`` (tcnn's corner order), as ``op(op(x, y), z)``."""
    xy = op(a.unsqueeze(-2), b.unsqueeze(-1))  # (..., 2[y], 2[x])
    op(xy.unsqueeze(-3), c.unsqueeze(-1).unsqueeze(-1), out=out.unflatten(-1, (2, 2, 2)))
    return out


def _level_entries(level: HashLevel, vertex: Tensor, out: Tensor, add: Tensor | int) -> None:
    """tcnn ``grid_index`` of the 8 corners of the cells whose lower vertex is ``vertex``.

    ``vertex`` (..., 3) int64; writes ``add`` + the entry within the level into ``out``
    (..., 8), int32 or int64. Bit-exact uint32 arithmetic: per-axis terms are computed in
    int64 and masked to 32 bits; when the level size is a power of two the modulo is applied
    per axis (``(a ⊕ b ⊕ c) mod 2^k = (a mod 2^k) ⊕ (b mod 2^k) ⊕ (c mod 2^k)``, and likewise
    for sums followed by one final mask) so the 8-corner tensors stay small.
    """
    offs = torch.tensor([0, 1], device=vertex.device)
    size = level.size
    pow2 = size & (size - 1) == 0
    factors = (1, level.resolution, level.resolution**2) if level.dense else HASH_PRIMES
    # fast path: vertices + 1 in [0, 2^31) -> products of a vertex and a factor < 2^32 fit in
    # int64 and no uint32 wrap-around can occur before the final mask / modulo
    in_range = bool(vertex.min() >= 0) and bool(vertex.max() < 2**31 - 1)
    if in_range and pow2:
        axis = [vertex[..., d].unsqueeze(-1) + offs for d in range(3)]
        terms = [axis[0], axis[1] * factors[1], axis[2] * factors[2]]
    else:
        axis = [(vertex[..., d].unsqueeze(-1) + offs) & _MASK32 for d in range(3)]  # uint32 casts
        terms = [axis[0], _mul_u32(axis[1], factors[1]), _mul_u32(axis[2], factors[2])]
    op = torch.add if level.dense else torch.bitwise_xor
    if pow2:
        terms = [(t & (size - 1)).to(out.dtype) for t in terms]
        _corner_combine(*terms, op, out)
        if level.dense:
            out.bitwise_and_(size - 1)
    else:
        idx = _corner_combine(*terms, op, torch.empty(out.shape, dtype=torch.int64, device=out.device))
        out.copy_((idx & _MASK32) % size)
    out += add


def _indices_level_major(
    spec: ArchSpec, u: Tensor, batch_entries: int = 0, levels: int | None = None
) -> tuple[Tensor, Tensor]:
    """Entries and weights shaped (L, ..., 8), each level contiguous.

    With ``batch_entries`` > 0, ``u`` is (B, N, 3) and NeRF ``b``'s entries are shifted by
    ``b·batch_entries`` (indices into the (B·entries, F) view of a batch of tables); the
    entries are int32 when they fit. ``levels``: only the first ``levels`` levels (None = all).
    """
    every = hash_levels(spec)
    levels = every[:levels] if levels is not None else every
    lead = u.shape[:-1]
    n_total = (u.shape[0] if batch_entries else 1) * (batch_entries or sum(lv.size for lv in every))
    small = n_total < 2**31 and spec.hash_log2_size <= 29
    entries = torch.empty((len(levels), *lead, 8), dtype=torch.int32 if small else torch.int64,
                          device=u.device)
    weights = torch.empty((len(levels), *lead, 8), dtype=torch.float32, device=u.device)
    if native.hash_indices(levels, u.detach().to(torch.float32), batch_entries, entries, weights):
        return entries, weights  # the same values, from the C kernel in one pass
    if batch_entries:
        shift = torch.arange(u.shape[0], device=u.device, dtype=entries.dtype).view(-1, 1, 1)
        shift *= batch_entries
    else:
        shift = 0
    u64 = u.detach().to(torch.float32).double()
    for i, level in enumerate(levels):
        # fmaf(scale, x, 0.5f): exact in float64 (24-bit × 24-bit product), rounded once
        pos = (u64 * level.scale + 0.5).float()
        base = torch.floor(pos)
        frac = pos - base
        w = torch.stack([1.0 - frac, frac], dim=-1)  # (..., 3, 2)
        _corner_combine(w[..., 0, :], w[..., 1, :], w[..., 2, :], torch.mul, weights[i])
        add = shift + level.offset if batch_entries else level.offset
        _level_entries(level, base.to(torch.int64), entries[i], add)
    return entries, weights


def hash_grid_indices(spec: ArchSpec, u: Tensor) -> tuple[Tensor, Tensor]:
    """Table entries and trilinear weights tcnn uses for positions ``u``.

    At level ``l``: ``pos = fmaf(scale_l, u, 0.5)`` (float32), vertex ``floor(pos)``, fraction
    ``pos − floor(pos)``. Corner ``k`` (bit ``d`` of ``k`` set = vertex + 1 along axis ``d``)
    has weight ``Π_d (frac_d if bit else 1 − frac_d)``, multiplied in axis order x, y, z.
    No clamping: tcnn wraps out-of-range vertices through the modulo (dense) or the hash.
    No gradient flows to ``u``.

    Returns ``entries`` (int64, global entry index ``offset_l + index``; its features are
    ``hash_table[entry·F + f]``) and ``weights`` (float32), both shaped (..., L, 8).
    """
    entries, weights = _indices_level_major(spec, u)
    return entries.long().movedim(0, -2), weights.movedim(0, -2)


def hash_grid_encoding(spec: ArchSpec, table: Tensor, u: Tensor, levels: int | None = None) -> Tensor:
    """tcnn ``HashGrid`` encoding: per level, the trilinear interpolation of the F features.

    Output feature ``l·F + f`` is level ``l``'s feature ``f`` (level-major, as tcnn).
    ``levels``: encode the first ``levels`` levels only (None = all), the leading ``levels·F``
    features of the whole encoding.

    Shapes: ``table`` (B, n_hash_params) in the canonical layout, ``u`` (B, N, 3) in [0, 1]
    -> (B, N, L·F) (L = ``levels`` where given).
    """
    n_feat = spec.hash_features
    n_params = spec.param_shapes()["hash_table"][0]
    if table.dim() != 2 or table.shape[1] != n_params:
        raise ValueError(f"hash table must have shape (B, {n_params}), got {tuple(table.shape)}")
    if u.dim() != 3 or u.shape[-1] != 3 or u.shape[0] != table.shape[0]:
        raise ValueError(f"positions must have shape (B={table.shape[0]}, N, 3), got {tuple(u.shape)}")
    b, n = u.shape[:2]
    n_entries = n_params // n_feat
    tcnn_sizes = [lv.size for lv in hash_levels(spec)]
    if sum(tcnn_sizes) != n_entries:
        raise ValueError(
            f"{spec.name}: hash level sizes {tcnn_sizes} (tiny-cuda-nn's float32 arithmetic) do not "
            f"match the spec's {spec.hash_level_sizes()}"
        )
    if levels is not None and not 1 <= levels <= len(tcnn_sizes):
        raise ValueError(f"{spec.name}: levels must be in [1, {len(tcnn_sizes)}], got {levels}")
    with torch.no_grad():
        entries, weights = _indices_level_major(spec, u, batch_entries=n_entries, levels=levels)  # (L, B, N, 8)
    out = _WeightedGather.apply(table.reshape(b * n_entries, n_feat), entries, weights.to(table.dtype))
    return out.permute(1, 2, 0, 3).reshape(b, n, entries.shape[0] * n_feat)  # (L, B, N, F) -> (B, N, L·F)


class _WeightedGather(torch.autograd.Function):
    """``out[..., f] = Σ_k rows[idx[..., k], f] · w[..., k]``; the backward scatters with
    ``torch.bincount`` (a sequential, deterministic sum; faster on the CPU than the
    ``index_add`` behind ``embedding``'s backward). With nfkit's C kernels (float32 on the
    CPU, :mod:`nfkit.nerf.native`) both passes run there instead, the gradient summed in
    double, level by level in parallel."""

    @staticmethod
    def forward(ctx, rows: Tensor, idx: Tensor, w: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(idx, w)
        ctx.n_rows = rows.shape[0]
        ctx.native = native.hash_gather_applies(rows, idx, w) and idx.shape[-1] == 8
        if ctx.native:  # the C kernel: the same sums in one pass
            return native.hash_gather(rows, idx, w)
        feats = F.embedding(idx, rows)  # (..., K, F)
        return (feats * w.unsqueeze(-1)).sum(dim=-2)

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        idx, w = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        if ctx.native and grad.dtype == torch.float32:
            return native.hash_scatter(grad, idx, w, ctx.n_rows), None, None
        flat_idx = idx.reshape(-1)
        contrib = grad.unsqueeze(-2) * w.unsqueeze(-1)  # (..., K, F)
        cols = [
            torch.bincount(flat_idx, weights=contrib[..., f].reshape(-1), minlength=ctx.n_rows)
            for f in range(contrib.shape[-1])
        ]
        return torch.stack(cols, dim=-1).to(grad.dtype), None, None
