"""Comparing float32 results with float64 references, independently of the BLAS kernel.

Two float32 computations of the same quantity by different kernels (``bmm`` versus ``@``, a
batched versus a single matrix, AVX2 versus AVX-512 code paths) round differently; how they
differ is a property of the CPU, so a test must never compare two of them with a tolerance
picked by trial. These helpers compare a float32 result with a float64 reference instead,
within a bound derived from the arithmetic: a result whose longest chain of dependent
floating-point operations has ``n`` roundings (sums of ``n`` products, layer after layer) is
off by at most about ``n · eps32`` relative to the magnitudes that chain combines (the
classical ``γ_n`` bound, Higham, *Accuracy and Stability of Numerical Algorithms* §3.1). As
the magnitude we take the largest entry of the reference tensor, so entries that are small
through cancellation get the absolute error of the large ones that produced them.

The float64 reference itself differs between kernels by ``n · eps64`` ≈ 1e-13 relative:
nine orders of magnitude below the float32 bound.
"""

from __future__ import annotations

import torch

EPS32 = float(torch.finfo(torch.float32).eps)
EPS64 = float(torch.finfo(torch.float64).eps)


def rounding_steps(spec, n_points: int) -> int:
    """Longest chain of float32 roundings in one NeRF's forward and backward pass: the input
    dot product, one per hidden layer, and the sum over points of a weight's gradient."""
    return spec.mlp_input_dim + spec.hidden_dim * spec.hidden_layers + n_points


def assert_float32_close(got: torch.Tensor, reference: torch.Tensor, steps: int, what: str = "") -> None:
    """``got`` (float32) within ``steps · eps32 · max|reference|`` of the float64 ``reference``."""
    assert reference.dtype == torch.float64, "the reference must be computed in float64"
    assert got.dtype == torch.float32, f"expected a float32 result, got {got.dtype}"
    scale = float(reference.detach().abs().max())
    bound = steps * EPS32 * max(scale, 1e-30)
    err = float((got.detach().double() - reference.detach()).abs().max())
    assert err <= bound, f"{what}: float32 error {err:.3g} above the rounding bound {bound:.3g} ({steps} steps)"


def assert_float64_close(got: torch.Tensor, reference: torch.Tensor, steps: int, what: str = "") -> None:
    """Two float64 computations of one formula agree to ``steps · eps64`` of the scale."""
    assert got.dtype == reference.dtype == torch.float64
    scale = float(reference.detach().abs().max())
    bound = steps * EPS64 * max(scale, 1e-300)
    err = float((got.detach() - reference.detach()).abs().max())
    assert err <= bound, f"{what}: float64 error {err:.3g} above {bound:.3g} ({steps} steps)"


def assert_float32_agree(a: torch.Tensor, b: torch.Tensor, steps: int, what: str = "") -> None:
    """Two float32 computations of one quantity (possibly by different kernels): each is within
    ``steps · eps32`` of the exact value relative to the scale, so they agree to twice that."""
    assert a.dtype == b.dtype == torch.float32
    scale = float(torch.maximum(a.detach().abs().max(), b.detach().abs().max()))
    bound = 2 * steps * EPS32 * max(scale, 1e-30)
    err = float((a.detach() - b.detach()).abs().max())
    assert err <= bound, f"{what}: float32 results differ by {err:.3g}, above the rounding bound {bound:.3g}"
