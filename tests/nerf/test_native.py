"""nfkit's C kernels (nfkit.nerf.native) against float64 references and the torch code.

``math.sin`` on the float64 value of each float32 argument is glibc's sine, which reduces the
argument exactly: the reference for what "the sine of this float32 value" is.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nfkit.nerf import native
from nfkit.nerf.encodings import frequency_encoding

needs_kernel = pytest.mark.skipif(not native.available(), reason="no C compiler: the kernel is not built here")


def _arguments() -> torch.Tensor:
    """float32 values over every magnitude the encodings produce and beyond, both signs."""
    gen = torch.Generator().manual_seed(0)
    mags = torch.exp2(torch.empty(20000).uniform_(-30, 100, generator=gen))
    frac = torch.rand(20000, generator=gen)
    signs = torch.where(torch.rand(20000, generator=gen) < 0.5, -1.0, 1.0)
    special = torch.tensor([0.0, -0.0, 1e-40, math.pi, -math.pi / 2, 1024.0, 1023.99, 2.0**24, 2.0**47 * math.pi, 3.0e38])
    return torch.cat([mags * (0.5 + frac) * signs, special]).float()


def _reference(x: torch.Tensor) -> np.ndarray:
    return np.array([math.sin(v) for v in x.double().tolist()])


def _ulps(values: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|values - ref| in units of the float32 spacing at ``ref``."""
    _, exp = np.frexp(np.abs(ref))
    return np.abs(values - ref) / np.ldexp(1.0, np.maximum(exp, -125) - 24)


@needs_kernel
def test_kernel_is_the_sine_to_one_and_a_half_ulp():
    x = _arguments()
    ours = native.native_sin(x).double().numpy()
    ref = _reference(x)
    err = np.abs(ours - ref)
    assert err.max() < 8e-8  # about an ulp of values near 1 (2^-24 = 6e-8)
    # relative to the value: 1.5 ulp, down to the reduction's absolute precision (the
    # fixed-point multiplier ends at 2^-38 of pi/2, about 6e-12), which tiny sines of huge
    # arguments reach
    ulps = _ulps(ours, ref)
    assert np.all((ulps <= 1.5) | (err <= 1e-10))
    assert np.all(ulps[np.abs(ref) > 2.0**-6] <= 1.5)
    torch_err = np.abs(torch.sin(x).double().numpy() - ref)
    assert torch_err.max() < 1e-7  # torch's own float32 sine, for scale: the two agree to ~1e-7


@needs_kernel
def test_vector_and_scalar_code_give_the_same_bits():
    # 8 values at a time with AVX2 (where the CPU has it) against the scalar code of the tail
    gen = torch.Generator().manual_seed(3)
    patterns = torch.randint(0, 2**31, (50000,), generator=gen, dtype=torch.int64)
    signs = torch.randint(0, 2, (50000,), generator=gen, dtype=torch.int64) << 31
    x = torch.cat([_arguments(), (patterns | signs).to(torch.int64).to(torch.int32).view(torch.float32),
                   torch.tensor([float("inf"), float("nan"), -0.0])])
    fast, scalar = native.native_sin(x), native.native_sin(x, vector=False)
    nan = torch.isnan(scalar)
    assert torch.equal(torch.isnan(fast), nan) and nan[-3:-1].all()
    assert torch.equal(fast.view(torch.int32)[~nan], scalar.view(torch.int32)[~nan])


@needs_kernel
def test_kernel_special_values():
    x = torch.tensor([float("inf"), float("-inf"), float("nan"), 0.0, -0.0] * 300)
    out = native.native_sin(x)
    assert torch.isnan(out[:3]).all() and (out[3:5] == 0).all()


@needs_kernel
def test_threads_do_not_change_the_values(monkeypatch):
    x = _arguments().repeat(8)
    one = native.native_sin(x)
    monkeypatch.setattr(native, "PARALLEL_MIN", 1024)
    assert torch.equal(native.native_sin(x), one)
    y = x.clone()
    assert native.native_sin(y, out=y) is y and torch.equal(y, one)


@needs_kernel
def test_frequency_encoding_matches_torch_sine_on_every_band():
    u = torch.rand(2, 500, 3, generator=torch.Generator().manual_seed(1))
    fast = frequency_encoding(u, 48)
    slow = frequency_encoding(u.requires_grad_(True), 48).detach()  # with grad: torch.sin
    assert fast.shape == slow.shape == (2, 500, 288)
    assert float((fast - slow).abs().max()) < 1e-7


def test_fallbacks_use_torch():
    x = torch.linspace(-1e6, 1e6, 5000, dtype=torch.float64)
    assert torch.equal(native.sin_(x.clone()), torch.sin(x))  # not float32
    small = torch.linspace(-3e5, 3e5, 100)
    assert torch.equal(native.sin_(small.clone()), torch.sin(small))  # too small to be worth a call
    strided = torch.linspace(-1e5, 1e5, 8000).reshape(80, 100).t()
    assert torch.equal(native.sin_(strided.clone().t().t()), torch.sin(strided))  # not contiguous
    with_grad = torch.linspace(-1e5, 1e5, 8000, requires_grad=True)
    assert native.sin_(with_grad * 1.0).grad_fn is not None


@needs_kernel
def test_native_sin_refuses_other_tensors():
    with pytest.raises(ValueError, match="float32 CPU tensor"):
        native.native_sin(torch.zeros(10, dtype=torch.float64))


def test_disabled_by_environment_and_built_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("NFKIT_NATIVE", "0")
    native._library.cache_clear()
    try:
        assert not native.available()
        x = torch.linspace(-1e6, 1e6, 5000)
        assert torch.equal(native.sin_(x.clone()), torch.sin(x))
        monkeypatch.setenv("NFKIT_NATIVE", "1")
        monkeypatch.setenv("NFKIT_CACHE", str(tmp_path))
        native._library.cache_clear()
        if native.available():
            assert len(list((tmp_path / "native").glob("native-*.so"))) == 1
    finally:
        native._library.cache_clear()


def test_two_over_pi_words_are_its_bits():
    words = native.two_over_pi_words()
    assert words.dtype == np.uint32 and words.shape == (8,) and words[0] == 0
    # the first two words as a 64-bit fraction are 2/pi to float64 precision
    assert abs((int(words[1]) * 2**32 + int(words[2])) / 2.0**64 - 2 / math.pi) < 1e-16
    # and they go on as 2/pi's bits do: 2^64 * 2/pi - floor(..) is the next words' fraction
    frac = (2 / native._pi(400) * 2**64) % 1
    assert abs(float(frac) - int(words[3]) / 2.0**32) < 2.0**-31


def _torch_only(monkeypatch):
    monkeypatch.setattr(native, "_library", lambda: None)


@needs_kernel
@pytest.mark.parametrize("name", ["hash", "hash-3n", "hash-11t"])
def test_hash_entries_and_weights_are_the_torch_ones_bit_for_bit(name, monkeypatch):
    from nfkit.nerf.encodings import _indices_level_major
    from nfkit.nerf.specs import REGISTRY

    spec = REGISTRY[name]
    gen = torch.Generator().manual_seed(2)
    u = torch.rand(3, 3000, 3, generator=gen) * 1.4 - 0.2  # some outside the box: wrapped vertices
    n_entries = spec.param_shapes()["hash_table"][0] // spec.hash_features
    ours = [_indices_level_major(spec, u, batch_entries=n_entries), _indices_level_major(spec, u)]
    _torch_only(monkeypatch)
    theirs = [_indices_level_major(spec, u, batch_entries=n_entries), _indices_level_major(spec, u)]
    for (e1, w1), (e2, w2) in zip(ours, theirs, strict=True):
        assert e1.dtype == e2.dtype == torch.int32
        assert torch.equal(e1, e2) and torch.equal(w1, w2)


@needs_kernel
def test_hash_interpolation_and_its_gradient_match_torch(monkeypatch):
    from nfkit.nerf.encodings import hash_grid_encoding
    from nfkit.nerf.specs import REGISTRY

    spec = REGISTRY["hash"]
    gen = torch.Generator().manual_seed(3)
    n_params = spec.param_shapes()["hash_table"][0]
    table = (torch.randn(2, n_params, generator=gen) * 0.1).requires_grad_(True)
    u = torch.rand(2, 4000, 3, generator=gen)
    out = hash_grid_encoding(spec, table, u)
    upstream = torch.randn(out.shape, generator=gen)
    (grad,) = torch.autograd.grad(out, table, upstream)
    again = torch.autograd.grad(hash_grid_encoding(spec, table, u), table, upstream)[0]
    assert torch.equal(grad, again)  # deterministic, threads and all
    _torch_only(monkeypatch)
    ref = hash_grid_encoding(spec, table, u)
    (ref_grad,) = torch.autograd.grad(ref, table, upstream)
    assert float((out - ref).abs().max().detach()) < 1e-6
    assert float((grad - ref_grad).abs().max()) < 1e-5 * float(ref_grad.abs().max())


def _pool_works() -> int:
    return native._pool().submit(lambda: 41 + 1).result(timeout=20)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_worker_threads():
    import multiprocessing

    assert _pool_works() == 42  # the parent's pool exists, with live threads
    with multiprocessing.get_context("fork").Pool(1) as pool:  # the child inherits none of them
        assert pool.apply_async(_pool_works).get(timeout=60) == 42
