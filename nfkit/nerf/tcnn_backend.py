"""Optional tiny-cuda-nn backend and the tiny-cuda-nn ↔ canonical parameter layouts.

Layout facts (tiny-cuda-nn, ``src/fully_fused_mlp.cu``, ``src/cutlass_mlp.cu``,
``include/tiny-cuda-nn/gpu_matrix.h``, ``network_with_input_encoding.h``):

- an MLP's parameters are one flat vector: the weight matrices one after the other, input
  layer first, each stored row-major as (out, in) (``GPUMatrix<T, RM>(rows=out, cols=in)``);
  the authors read them back with ``flat[a:b].reshape(out, in)``
  (``gmnerf/datasets/single_arch.py``);
- no biases; the input width is padded to a multiple of 16 and the output width (4) to 16
  (``REQUIRED_ALIGNMENT() == 16`` for FullyFusedMLP and CutlassMLP); the padded *inputs* are
  filled with 1.0 (``tcnn.Network`` is a ``NetworkWithInputEncoding`` with an Identity
  encoding, ``identity.h``, which pads with 1), the padded outputs are ignored;
- a hash grid's parameters are the canonical ``hash_table`` as is (level-major, entry-major).

nfkit's canonical ``mlp.0`` has ``spec.mlp_input_dim`` columns (the padded width: the padding
columns are kept, they are the first layer's bias), so the conversions only add or drop the
output padding rows (4 -> 16). They are pure torch and run anywhere. :class:`TcnnField` needs
CUDA and an importable ``tinycudann``; it feeds tcnn's network [encoding ‖ 1 … 1], the same
function as ``nfkit.nerf.field`` (the frequency encoding and the tri-plane are computed in
torch in both backends).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

import torch
from torch import Tensor

from nfkit.nerf import field as nerf_field
from nfkit.nerf.encodings import frequency_encoding, triplane_features
from nfkit.nerf.specs import OUT_DIM, TCNN_ALIGN, ArchSpec

__all__ = [
    "TcnnField",
    "canonical_to_tcnn_mlp",
    "tcnn_available",
    "tcnn_hash_config",
    "tcnn_mlp_layer_shapes",
    "tcnn_mlp_n_params",
    "tcnn_mlp_to_canonical",
    "tcnn_network_config",
]

log = logging.getLogger(__name__)

FULLY_FUSED_WIDTHS = (16, 32, 64, 128)


def _next_multiple(n: int, k: int = TCNN_ALIGN) -> int:
    return (n + k - 1) // k * k


@functools.lru_cache(maxsize=1)
def _import_tcnn():
    try:
        import tinycudann  # noqa: PLC0415
    except Exception as exc:  # ImportError, or a CUDA/ABI error raised while loading
        log.debug("tinycudann is not usable: %s", exc)
        return None
    return tinycudann


def tcnn_available() -> bool:
    """True when ``tinycudann`` imports (tried once, lazily) and a CUDA device exists."""
    return _import_tcnn() is not None and torch.cuda.is_available()


# --------------------------------------------------------------------------- layouts
def tcnn_mlp_layer_shapes(spec: ArchSpec) -> list[tuple[int, int]]:
    """(out, in) of each weight matrix as tiny-cuda-nn stores it: the canonical shapes (whose
    first layer already has the padded input width) with the output padded 4 -> 16."""
    shapes = spec.mlp_shapes()
    return [(_next_multiple(o) if i == len(shapes) - 1 else o, n) for i, (o, n) in enumerate(shapes)]


def tcnn_mlp_n_params(spec: ArchSpec) -> int:
    """Length of tiny-cuda-nn's flat MLP parameter vector (``mlp_base.params``)."""
    return sum(o * i for o, i in tcnn_mlp_layer_shapes(spec))


def canonical_to_tcnn_mlp(spec: ArchSpec, params: Mapping[str, Tensor]) -> Tensor:
    """Canonical ``mlp.{i}`` -> tiny-cuda-nn's flat parameter vector.

    The output padding rows (4 -> 16) are zero; the first layer's padding columns are the
    canonical ones. Leading batch dimensions are kept.

    Shapes: ``params["mlp.i"]`` (..., out_i, in_i) -> (..., tcnn_mlp_n_params(spec)).
    """
    flats = []
    for i, ((out_c, in_c), (out_t, in_t)) in enumerate(zip(spec.mlp_shapes(), tcnn_mlp_layer_shapes(spec), strict=True)):
        w = params[f"mlp.{i}"]
        if tuple(w.shape[-2:]) != (out_c, in_c):
            raise ValueError(f"{spec.name}: mlp.{i} has shape {tuple(w.shape[-2:])}, expected {(out_c, in_c)}")
        w = torch.nn.functional.pad(w, (0, in_t - in_c, 0, out_t - out_c))
        flats.append(w.reshape(*w.shape[:-2], out_t * in_t))
    return torch.cat(flats, dim=-1)


def tcnn_mlp_to_canonical(spec: ArchSpec, flat: Tensor) -> dict[str, Tensor]:
    """tiny-cuda-nn's flat MLP parameter vector -> canonical ``mlp.{i}`` (exact: only the unused
    output padding rows are dropped; the input padding columns are kept).

    Shapes: ``flat`` (..., tcnn_mlp_n_params(spec)) -> ``mlp.i`` (..., out_i, in_i).
    """
    n = tcnn_mlp_n_params(spec)
    if flat.shape[-1] != n:
        raise ValueError(
            f"tiny-cuda-nn MLP parameters have {flat.shape[-1]} values, "
            f"architecture {spec.name!r} expects {n}"
        )
    out, start = {}, 0
    for i, ((out_c, in_c), (out_t, in_t)) in enumerate(zip(spec.mlp_shapes(), tcnn_mlp_layer_shapes(spec), strict=True)):
        w = flat[..., start : start + out_t * in_t].reshape(*flat.shape[:-1], out_t, in_t)
        out[f"mlp.{i}"] = w[..., :out_c, :in_c].contiguous()
        start += out_t * in_t
    return out


def tcnn_network_config(spec: ArchSpec) -> dict:
    """tiny-cuda-nn ``network_config`` of the spec's MLP (FullyFusedMLP when it can be)."""
    fully_fused = spec.activation == "relu" and spec.hidden_dim in FULLY_FUSED_WIDTHS
    return {
        "otype": "FullyFusedMLP" if fully_fused else "CutlassMLP",
        "activation": "ReLU" if spec.activation == "relu" else "Sine",
        "output_activation": "None",
        "n_neurons": spec.hidden_dim,
        "n_hidden_layers": spec.hidden_layers,
    }


def tcnn_hash_config(spec: ArchSpec) -> dict:
    """tiny-cuda-nn ``encoding_config`` of the spec's hash grid."""
    return {
        "otype": "HashGrid",
        "n_levels": spec.hash_levels,
        "n_features_per_level": spec.hash_features,
        "log2_hashmap_size": spec.hash_log2_size,
        "base_resolution": spec.hash_base_res,
        "per_level_scale": spec.hash_per_level_scale,
        "interpolation": "Linear",
    }


# --------------------------------------------------------------------------- the module
class TcnnField(torch.nn.Module):
    """One NeRF evaluated with tiny-cuda-nn (CUDA only), initialised from canonical params.

    ``forward(x)`` takes world positions (N, 3) and returns ``rgb`` (N, 3), ``sigma`` (N,),
    the same function as ``nfkit.nerf.field.forward`` up to tcnn's half precision.
    ``to_canonical()`` returns the current weights in the canonical layout.
    """

    def __init__(
        self, spec: ArchSpec, params: Mapping[str, Tensor], device: str | torch.device = "cuda", sin: str = "exact"
    ):
        super().__init__()
        self.sin = sin  # the frequency encoding is computed in torch: the NeRF's own sine
        tcnn = _import_tcnn()
        if tcnn is None:
            raise RuntimeError("the tiny-cuda-nn backend needs the tinycudann package (not importable here)")
        if not torch.cuda.is_available():
            raise RuntimeError("the tiny-cuda-nn backend needs a CUDA device")
        self.spec = spec
        device = torch.device(device)
        params = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in params.items()}
        self.in_width = tcnn_mlp_layer_shapes(spec)[0][1]
        self.network = tcnn.Network(
            n_input_dims=self.in_width, n_output_dims=OUT_DIM, network_config=tcnn_network_config(spec)
        ).to(device)
        with torch.no_grad():
            flat = canonical_to_tcnn_mlp(spec, params).to(device)
            self.network.params.copy_(flat.to(self.network.params.dtype))
        self.encoding = None
        self.triplane = None
        if spec.family == "hash":
            self.encoding = _tcnn_encoding(tcnn, spec).to(device)
            with torch.no_grad():
                self.encoding.params.copy_(params["hash_table"].to(device, self.encoding.params.dtype))
        elif spec.family == "tri":
            self.triplane = torch.nn.Parameter(params["triplane"].to(device).clone())

    def _encode(self, x: Tensor) -> Tensor:
        u = nerf_field.normalize(x)
        if self.spec.family == "mlp":
            enc = frequency_encoding(u, self.spec.freq_bands, sin=self.sin)
        elif self.spec.family == "tri":
            lo, hi = nerf_field.AABB
            g = 2.0 * (x - lo) / (hi - lo) - 1.0
            tri = triplane_features(self.triplane.unsqueeze(0), g.unsqueeze(0))[0]
            enc = torch.cat([tri, frequency_encoding(u, self.spec.freq_bands, sin=self.sin)], dim=-1)
        else:
            enc = self.encoding(u).float()
        return torch.nn.functional.pad(enc, (0, self.in_width - enc.shape[-1]), value=1.0)  # tcnn's padding

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # noqa: D102
        out = self.network(self._encode(x)).float()[:, :OUT_DIM]
        inside = ((nerf_field.normalize(x) > 0) & (nerf_field.normalize(x) < 1)).all(dim=-1)
        sigma = nerf_field.trunc_exp(out[:, 3] - 1.0) * inside.to(out.dtype)
        return torch.sigmoid(out[:, :3]), sigma

    def density(self, x: Tensor) -> Tensor:
        return self.forward(x)[1]

    @torch.no_grad()
    def to_canonical(self) -> dict[str, Tensor]:
        """Current weights, canonical layout, float32 on the CPU."""
        out = tcnn_mlp_to_canonical(self.spec, self.network.params.detach().float().cpu())
        if self.encoding is not None:
            out["hash_table"] = self.encoding.params.detach().float().cpu().clone()
        if self.triplane is not None:
            out["triplane"] = self.triplane.detach().float().cpu().clone()
        return {name: out[name] for name in self.spec.param_shapes()}


def _tcnn_encoding(tcnn, spec: ArchSpec):
    try:  # float32 grid where the bindings allow choosing the precision
        return tcnn.Encoding(n_input_dims=3, encoding_config=tcnn_hash_config(spec), dtype=torch.float32)
    except TypeError:
        return tcnn.Encoding(n_input_dims=3, encoding_config=tcnn_hash_config(spec))
