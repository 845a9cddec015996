"""One radiance-field interface for every backend: a batch of ``B`` fields evaluated together.

Everything that renders or fits (``nfkit.render``, ``nfkit.fit``, later the implicit decoder)
takes a :class:`RadianceField`; implementations are

- :class:`ParamField`: NeRFs given by canonical parameters with a leading NeRF dimension, the
  pure-torch field of :mod:`nfkit.nerf.field` (any device, differentiable);
- ``nfkit.fit.trainer.TorchBatchedNerfs`` (a trainable :class:`ParamField`) and
  ``TcnnBatchedNerfs`` (one tiny-cuda-nn module per NeRF);
- anything else with these members, e.g. a decoder conditioned on ``B`` embeddings.

Shapes:
    ``field(x)``: x (B, N, 3) world positions -> rgb (B, N, 3) in (0, 1), sigma (B, N) >= 0
    ``field.density(x)``: (B, N, 3) -> (B, N)
    ``field.density_one(b, x)``: (N, 3) -> (N,), field ``b`` alone (nerfacc's per-NeRF sampler)
    ``field.n_fields``: B
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from nfkit.nerf import field as nerf_field
from nfkit.nerf.specs import ArchSpec


@runtime_checkable
class RadianceField(Protocol):
    """``B`` radiance fields evaluated together (see the module docstring for shapes)."""

    @property
    def n_fields(self) -> int: ...

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def density(self, x: Tensor) -> Tensor: ...

    def density_one(self, b: int, x: Tensor) -> Tensor: ...


class ParamField:
    """``B`` NeRFs of ``spec`` from batched canonical parameters (``name -> (B, *shape)``).

    ``sin`` is the sine of the frequency encoding (``"exact"``, or ``"tcnn"`` for NeRFs whose
    weights were trained with tiny-cuda-nn's fast sine): every evaluation uses it. ``bands``
    (None = all): evaluate only the frequency encoding's first ``bands`` bands, for NeRFs whose
    first-layer weights on the others are zero; ``levels`` likewise the hash grid's first
    levels, for tables that are zero on the others (see :func:`nfkit.nerf.field.forward`).
    """

    def __init__(self, spec: ArchSpec, params: Mapping[str, Tensor], sin: str = "exact") -> None:
        if not params:
            raise ValueError(f"{spec.name}: no parameters")
        self.spec = spec
        self.params = params
        self.sin = sin
        self.bands: int | None = None
        self.levels: int | None = None

    @property
    def _kw(self) -> dict:
        """What every evaluation passes to :mod:`nfkit.nerf.field`."""
        return {"sin": self.sin, "bands": self.bands, "levels": self.levels}

    @property
    def n_fields(self) -> int:
        return int(next(iter(self.params.values())).shape[0])

    @property
    def device(self):
        return next(iter(self.params.values())).device

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return nerf_field.forward(self.spec, self.params, x, **self._kw)

    def density(self, x: Tensor) -> Tensor:
        return nerf_field.density(self.spec, self.params, x, **self._kw)

    def _params_of(self, i: int) -> dict[str, Tensor]:
        """NeRF ``i``'s parameters, with a leading dimension of 1."""
        return {name: v[i : i + 1] for name, v in self.params.items()}

    @staticmethod
    def _split(x: Tensor, counts: Tensor, min_fill: float) -> bool:
        """Whether the padding beyond ``counts`` would be more than ``1 - min_fill`` of a
        batched call on ``x`` (B, K, 3), so that evaluating each NeRF alone is less work."""
        b, k = x.shape[:2]
        return b > 1 and int(counts.sum()) < min_fill * b * k

    def forward_ragged(self, x: Tensor, counts: Tensor, min_fill: float = 0.75) -> tuple[Tensor, Tensor]:
        """``self(x)`` where only the first ``counts[b]`` positions of row ``b`` matter (the
        rest is padding, and its outputs are zeros). When padding would be more than
        ``1 - min_fill`` of the batched call, each NeRF is evaluated on its own positions
        instead (same function, less work)."""
        if not self._split(x, counts, min_fill):
            return self(x)
        k = x.shape[1]
        rgbs, sigmas = [], []
        for i in range(x.shape[0]):
            n = int(counts[i])
            rgb, sigma = nerf_field.forward(self.spec, self._params_of(i), x[i : i + 1, :n], **self._kw)
            rgbs.append(torch.nn.functional.pad(rgb[0], (0, 0, 0, k - n)))
            sigmas.append(torch.nn.functional.pad(sigma[0], (0, k - n)))
        return torch.stack(rgbs), torch.stack(sigmas)

    def density_ragged(self, x: Tensor, counts: Tensor, min_fill: float = 0.75) -> Tensor:
        """``self.density(x)`` where only the first ``counts[b]`` positions of row ``b``
        matter (zeros in the padding), each NeRF on its own positions when padding would be
        more than ``1 - min_fill`` of the batched call."""
        if not self._split(x, counts, min_fill):
            return self.density(x)
        out = x.new_zeros(x.shape[:2])
        for i in range(x.shape[0]):
            n = int(counts[i])
            if n:
                out[i, :n] = nerf_field.density(self.spec, self._params_of(i), x[i : i + 1, :n], **self._kw)[0]
        return out

    def density_one(self, b: int, x: Tensor) -> Tensor:
        return nerf_field.density(self.spec, self._params_of(b), x[None], **self._kw)[0]


__all__ = ["ParamField", "RadianceField"]
