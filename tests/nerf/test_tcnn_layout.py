"""tiny-cuda-nn flat layouts (CPU) and the optional TcnnField (CUDA + tinycudann only)."""

from __future__ import annotations

import pytest
import torch

from nfkit.nerf import field, tcnn_backend
from nfkit.nerf.specs import REGISTRY, get_arch


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_flat_sizes_match_the_reference_networks():
    # gmnerf config: mlp 144 -> 3x64 -> 16; tri 304 -> 3x64 -> 16; hash 8 (padded 16) -> 3x64 -> 16
    assert tcnn_backend.tcnn_mlp_n_params(get_arch("mlp")) == 64 * 144 + 2 * 64 * 64 + 16 * 64
    assert tcnn_backend.tcnn_mlp_n_params(get_arch("tri")) == 64 * 304 + 2 * 64 * 64 + 16 * 64
    assert tcnn_backend.tcnn_mlp_n_params(get_arch("hash")) == 64 * 16 + 2 * 64 * 64 + 16 * 64
    assert tcnn_backend.tcnn_mlp_layer_shapes(get_arch("hash-2l")) == [(64, 16), (64, 64), (16, 64)]
    # the canonical first layer has tcnn's padded input width: only the output padding differs
    assert [get_arch(n).n_input_padding for n in ("mlp", "tri", "hash", "hash-3n", "tri-8c")] == [0, 0, 8, 10, 8]
    for name in REGISTRY:
        spec = get_arch(name)
        assert tcnn_backend.tcnn_mlp_layer_shapes(spec)[:-1] == spec.mlp_shapes()[:-1]
        assert tcnn_backend.tcnn_mlp_layer_shapes(spec)[0] == (spec.hidden_dim, spec.mlp_input_dim)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_canonical_tcnn_roundtrip_is_exact(name):
    spec = get_arch(name)
    g = torch.Generator().manual_seed(0)
    mlp = {k: torch.randn(2, *s, generator=g) for k, s in spec.param_shapes().items() if k.startswith("mlp.")}
    flat = tcnn_backend.canonical_to_tcnn_mlp(spec, mlp)
    assert flat.shape == (2, tcnn_backend.tcnn_mlp_n_params(spec))
    back = tcnn_backend.tcnn_mlp_to_canonical(spec, flat)
    assert list(back) == list(mlp)
    assert all(torch.equal(back[k], mlp[k]) for k in mlp)


def test_flat_layout_is_row_major_out_by_in_with_zero_output_padding():
    spec = get_arch("hash-2l")  # layers (64, 16) (8 grid features + 8 padding), (64, 64), (4, 64) -> (16, 64)
    assert spec.mlp_shapes() == [(64, 16), (64, 64), (4, 64)]
    mlp = {f"mlp.{i}": torch.arange(o * n, dtype=torch.float32).reshape(o, n) + 1 for i, (o, n) in enumerate(spec.mlp_shapes())}
    flat = tcnn_backend.canonical_to_tcnn_mlp(spec, mlp)
    w0 = flat[: 64 * 16].reshape(64, 16)
    assert torch.equal(w0, mlp["mlp.0"])  # the padding columns 8..15 are kept, in place
    assert flat[16 * 3 + 5].item() == mlp["mlp.0"][3, 5].item()  # element (o, i) at o·in + i
    assert flat[16 * 3 + 12].item() == mlp["mlp.0"][3, 12].item()  # a padding column
    w1 = flat[64 * 16 : 64 * 16 + 64 * 64].reshape(64, 64)
    assert torch.equal(w1, mlp["mlp.1"])
    w2 = flat[64 * 16 + 64 * 64 :].reshape(16, 64)
    assert torch.equal(w2[:4], mlp["mlp.2"]) and torch.all(w2[4:] == 0)
    # tcnn's unused output rows are dropped on the way back, nothing else
    flat[64 * 16 + 64 * 64 + 4 * 64 :] = 7.0
    back = tcnn_backend.tcnn_mlp_to_canonical(spec, flat)
    assert all(torch.equal(back[k], mlp[k]) for k in mlp)


def test_wrong_flat_size_is_refused():
    with pytest.raises(ValueError, match="expects 18432"):
        tcnn_backend.tcnn_mlp_to_canonical(get_arch("mlp"), torch.zeros(10240))


def test_network_configs_follow_the_reference():
    assert tcnn_backend.tcnn_network_config(get_arch("mlp"))["otype"] == "FullyFusedMLP"
    tri = tcnn_backend.tcnn_network_config(get_arch("tri"))
    assert (tri["otype"], tri["activation"], tri["n_hidden_layers"]) == ("CutlassMLP", "Sine", 3)
    hsh = tcnn_backend.tcnn_hash_config(get_arch("hash-11t"))
    assert (hsh["n_levels"], hsh["log2_hashmap_size"], hsh["per_level_scale"]) == (4, 11, 2.0)


def test_tcnn_available_is_a_cached_bool():
    assert tcnn_backend.tcnn_available() in (True, False)
    assert tcnn_backend._import_tcnn.cache_info().currsize == 1


@pytest.mark.gpu
@pytest.mark.skipif(
    not (torch.cuda.is_available() and tcnn_backend.tcnn_available()), reason="needs CUDA and tinycudann"
)
@pytest.mark.parametrize("name", ["mlp", "tri", "hash"])
def test_tcnn_field_matches_torch_field(name):
    spec = get_arch(name)
    params = field.init_params(spec, torch.Generator().manual_seed(0))
    params = {k: v + 0.05 * torch.randn(v.shape, generator=_gen()) for k, v in params.items()}
    module = tcnn_backend.TcnnField(spec, params)
    x = (torch.rand(4096, 3, generator=_gen()) * 1.3 - 0.65).cuda()
    rgb, sigma = module(x)
    ref_rgb, ref_sigma = field.forward(spec, {k: v[None].cuda() for k, v in params.items()}, x[None])
    torch.testing.assert_close(rgb, ref_rgb[0], atol=2e-2, rtol=2e-2)  # tcnn runs in half precision
    torch.testing.assert_close(sigma, ref_sigma[0], atol=2e-2, rtol=5e-2)
    back = module.to_canonical()
    for k in spec.param_shapes():
        torch.testing.assert_close(back[k], params[k], atol=1e-3, rtol=1e-3)
