"""The radiance field of every architecture, functional and batched over NeRFs (pure torch).

A NeRF is its canonical parameters (``ArchSpec.param_shapes()``); here every tensor carries a
leading NeRF batch dimension ``B`` so many NeRFs are evaluated at once with batched matrix
products (no Python loop over NeRFs). Reference: the authors' tiny-cuda-nn fields
(``gmnerf/nf2vec/nerf/{mlp,triplane,hash}.py``):

1. world positions ``x`` are normalised over the box ``AABB``: ``u = (x − lo)/(hi − lo)``;
2. encoding (``nfkit.nerf.encodings``) of width ``spec.encoding_dim``:

   - ``mlp``:  frequency(u)
   - ``tri``:  [tri-plane features (C) ‖ frequency(u)], the tri-plane sampled at ``2u − 1``
     (the reference feeds [frequency ‖ tri-plane]; nfkit's canonical order puts the C
     channels first and ``nfkit.nerf.interop`` permutes the columns on import)
   - ``hash``: hash grid(u);

   the MLP input (width ``spec.mlp_input_dim``) is [encoding ‖ 1 … 1]: tiny-cuda-nn pads it
   to a multiple of 16 with the constant 1, so the first layer's weights on those inputs act
   as a bias. It is computed as ``W[:, :enc] e + W[:, enc:].sum(-1)`` (the same function,
   without materialising the ones);
3. MLP without biases: ``h ← act(h Wᵢᵀ)`` (ReLU or sin), no activation on the last layer;
4. ``rgb = sigmoid(out[:3])``, ``σ = trunc_exp(out[3] − 1)``, and σ = 0 outside the open box
   (the reference's ``selector``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from nfkit.nerf.encodings import frequency_encoding, hash_grid_encoding, triplane_features
from nfkit.nerf.specs import TCNN_ALIGN, ArchSpec

__all__ = ["AABB", "density", "forward", "init_params", "mlp_init_bounds", "normalize", "trunc_exp"]

AABB: tuple[float, float] = (-0.7, 0.7)
"""Object box ``[lo, hi]^3`` in world units (SPEC §2)."""

TRIPLANE_INIT_STD = 1e-3
"""Reference tri-plane init: ``torch.normal(0, 0.001)`` (``gmnerf/nf2vec/nerf/triplane.py``)."""
HASH_INIT_RANGE = 1e-4
"""tcnn grid init: uniform(−1e−4, 1e−4) (``GridEncodingTemplated::initialize_params``)."""


class _TruncExp(torch.autograd.Function):
    """``exp(x)`` whose gradient uses ``exp(min(x, 15))`` (torch-ngp / nerfacc)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: Tensor) -> Tensor:
    """Exponential with a clamped gradient (``exp(clamp(x, max=15))``)."""
    return _TruncExp.apply(x)


def normalize(x: Tensor) -> Tensor:
    """World positions -> ``[0, 1]^3`` over :data:`AABB`."""
    lo, hi = AABB
    return (x - lo) / (hi - lo)


def _check(spec: ArchSpec, params: Mapping[str, Tensor], x: Tensor) -> int:
    if x.dim() != 3 or x.shape[-1] != 3:
        raise ValueError(f"positions must have shape (B, N, 3), got {tuple(x.shape)}")
    b = x.shape[0]
    for name, shape in spec.param_shapes().items():
        if name not in params:
            raise ValueError(f"{spec.name}: missing parameter {name!r}")
        got = tuple(params[name].shape)
        if got != (b, *shape):
            raise ValueError(f"{spec.name}: parameter {name!r} has shape {got}, expected {(b, *shape)}")
    return b


def _matmul(enc: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
    """``enc wᵀ (+ bias)``: (B, N, k) × (B, out, k) (+ (B, 1, out)) -> (B, N, out)."""
    if bias is None:
        return torch.bmm(enc, w.transpose(1, 2))
    return torch.baddbmm(bias, enc, w.transpose(1, 2))


def _band_weights(spec: ArchSpec, w: Tensor, bands: int) -> Tensor:
    """The columns of the frequency part ``w`` (B, out, freq_dim) of ``mlp.0`` that read the
    first ``bands`` bands, in the order ``frequency_encoding(u, bands)`` puts them out."""
    b, out = w.shape[:2]
    per_dim = w.reshape(b, out, -1, 2 * spec.freq_bands)  # (B, out, D, 2·n): per input dim, (sin, cos) per band
    return per_dim[..., : 2 * bands].reshape(b, out, -1)


def _first_layer(spec: ArchSpec, params: Mapping[str, Tensor], x: Tensor, sin: str, bands: int | None = None,
                 levels: int | None = None) -> Tensor:
    """Encoding followed by the first linear layer, without materialising the concatenation
    [encoding ‖ 1 … 1]: the weights on the constant-1 padding inputs are summed into a bias.
    ``bands``: evaluate only the frequency encoding's first ``bands`` bands, for weights whose
    columns on the other bands are zero; ``levels``: only the hash grid's first ``levels``
    levels, for tables whose entries on the other levels are zero (each the same function,
    less work; None = all)."""
    w0 = params["mlp.0"]  # (B, out, mlp_input_dim)
    if bands is not None and not 0 <= bands <= spec.freq_bands:
        raise ValueError(f"{spec.name}: bands must be in [0, {spec.freq_bands}], got {bands}")
    cut = bands is not None and bands < spec.freq_bands
    enc_dim = spec.encoding_dim
    bias = None
    if spec.n_input_padding:
        bias = w0[:, :, enc_dim:].sum(dim=-1).unsqueeze(1)  # (B, 1, out); gradient reaches every column
    u = normalize(x)
    if spec.family == "tri":
        lo, hi = AABB
        g = 2.0 * (x - lo) / (hi - lo) - 1.0  # reference: scaled_coords
        tri = triplane_features(params["triplane"], g)  # (B, N, C)
        c = spec.tri_channels
        h = _matmul(tri, w0[:, :, :c], bias)
        if spec.freq_bands and not (cut and bands == 0):
            wf = w0[:, :, c:enc_dim]
            freq = frequency_encoding(u, bands if cut else spec.freq_bands, sin=sin).to(w0.dtype)
            h = torch.baddbmm(h, freq, (_band_weights(spec, wf, bands) if cut else wf).transpose(1, 2))
    else:
        if spec.family == "mlp":
            enc = frequency_encoding(u, bands if cut else spec.freq_bands, sin=sin).to(w0.dtype)
            if cut:
                return _matmul(enc, _band_weights(spec, w0[:, :, :enc_dim], bands), bias)
        else:
            enc = hash_grid_encoding(spec, params["hash_table"], u, levels=levels)
        h = _matmul(enc, w0[:, :, : enc.shape[-1]], bias)
    return h


def _activation(spec: ArchSpec, h: Tensor) -> Tensor:
    """ReLU in place (``h`` is always a fresh matmul output; saves a large buffer), or sin."""
    return torch.relu_(h) if spec.activation == "relu" else torch.sin(h)


def _hidden(spec: ArchSpec, params: Mapping[str, Tensor], x: Tensor, sin: str, bands: int | None = None,
            levels: int | None = None) -> Tensor:
    """Activations of the last hidden layer, (B, N, hidden_dim)."""
    h = _activation(spec, _first_layer(spec, params, x, sin, bands, levels))
    for i in range(1, spec.hidden_layers):
        h = _activation(spec, torch.bmm(h, params[f"mlp.{i}"].transpose(1, 2)))
    return h


def _inside(x: Tensor) -> Tensor:
    u = normalize(x)
    return ((u > 0.0) & (u < 1.0)).all(dim=-1)


def forward(
    spec: ArchSpec, params: Mapping[str, Tensor], x: Tensor, *, sin: str = "exact", bands: int | None = None,
    levels: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Colour and density of ``B`` NeRFs at world positions ``x``.

    ``sin="tcnn"`` evaluates the frequency encoding with tiny-cuda-nn's fast sine (see
    ``encodings.frequency_encoding``), e.g. to render NeRFs imported from tiny-cuda-nn.
    ``bands`` evaluates only the encoding's first ``bands`` frequency bands: the same function
    when ``mlp.0``'s columns on the other bands are zero (``fit-nerfs``'s ``band_cut``);
    ``levels`` likewise the hash grid's first ``levels`` levels (``level_cut``).

    Shapes: ``params[name]`` (B, *spec.param_shapes()[name]), ``x`` (B, N, 3)
    -> rgb (B, N, 3) in (0, 1), sigma (B, N) >= 0.
    """
    _check(spec, params, x)
    h = _hidden(spec, params, x, sin, bands, levels)
    out = torch.bmm(h, params[f"mlp.{spec.hidden_layers}"].transpose(1, 2))  # (B, N, 4)
    rgb = torch.sigmoid(out[..., :3])
    sigma = trunc_exp(out[..., 3] - 1.0) * _inside(x).to(out.dtype)
    return rgb, sigma


def density(spec: ArchSpec, params: Mapping[str, Tensor], x: Tensor, *, sin: str = "exact",
            bands: int | None = None, levels: int | None = None) -> Tensor:
    """Density only (the σ row of the last layer), e.g. for occupancy-grid updates.

    Shapes: as :func:`forward` -> sigma (B, N).
    """
    _check(spec, params, x)
    h = _hidden(spec, params, x, sin, bands, levels)
    w_sigma = params[f"mlp.{spec.hidden_layers}"][:, 3, :]  # (B, hidden)
    raw = torch.bmm(h, w_sigma.unsqueeze(-1)).squeeze(-1)
    return trunc_exp(raw - 1.0) * _inside(x).to(raw.dtype)


# --------------------------------------------------------------------------- initialisation
def _next_multiple(n: int, k: int) -> int:
    return (n + k - 1) // k * k


def mlp_init_bounds(spec: ArchSpec) -> list[float]:
    """Half-width of the uniform init of each MLP layer, as tiny-cuda-nn computes it.

    tcnn (``FullyFusedMLP`` / ``CutlassMLP::initialize_params``, ``gpu_matrix.h``) draws every
    entry of its padded matrices (the first layer's padding columns included, which nfkit
    stores: ``mlp_input_dim`` inputs; the last layer's output padded 4 -> 16, which nfkit does
    not store) from one distribution whose fans are the padded widths:

    - ReLU: Xavier uniform, ``sqrt(6 / (fan_in + fan_out))``;
    - sine: SIREN, ``30 / fan_in`` for the first layer and ``sqrt(6 / fan_in)`` after
      (tcnn's sine has no ω₀, so SIREN's ω₀ = 30 is folded into the first layer).
    """
    shapes = spec.mlp_shapes()
    bounds = []
    for i, (out_dim, in_dim) in enumerate(shapes):
        fan_in = _next_multiple(in_dim, TCNN_ALIGN)  # the first layer's is mlp_input_dim already
        fan_out = _next_multiple(out_dim, TCNN_ALIGN) if i == len(shapes) - 1 else out_dim
        if spec.activation == "sine":
            bounds.append(30.0 / fan_in if i == 0 else math.sqrt(6.0 / fan_in))
        else:
            bounds.append(math.sqrt(6.0 / (fan_in + fan_out)))
    return bounds


def init_params(spec: ArchSpec, generator: torch.Generator) -> dict[str, Tensor]:
    """Random initial parameters of ONE NeRF (canonical shapes, float32, CPU).

    Distributions follow the reference: tri-plane N(0, 0.001²), hash table U(±1e−4), MLP
    layers as :func:`mlp_init_bounds` (every column of ``mlp.0``, the constant-1 padding
    inputs' included, as tiny-cuda-nn initialises them). Tensors are drawn in canonical order from
    ``generator``, so a seed determines the result.
    """
    bounds = mlp_init_bounds(spec)
    out: dict[str, Tensor] = {}
    for name, shape in spec.param_shapes().items():
        if name == "triplane":
            t = torch.randn(shape, generator=generator) * TRIPLANE_INIT_STD
        elif name == "hash_table":
            t = (torch.rand(shape, generator=generator) * 2.0 - 1.0) * HASH_INIT_RANGE
        else:
            b = bounds[int(name.split(".")[1])]
            t = (torch.rand(shape, generator=generator) * 2.0 - 1.0) * b
        out[name] = t.to(torch.float32).contiguous()
    return out
