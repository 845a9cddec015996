"""Per-edge standardisation of a layout's edge values (``EncoderConfig.value_norm = "edge"``).

Every NeRF of one architecture is fitted from the same initialization (seed 003 §VIII), so an
edge's value is mostly that edge's init value, the same in every NeRF, and the object lives in
the small change made by fitting. Standardised per (edge layer, edge type) the values still
spread mostly by edge, not by object. Measured on the demo data (``nfkit/bench/encoder.py``
notes), a 5-nearest-neighbour classifier on the raw weights standardised *per weight* over the
training NeRFs reaches 62 / 92 / 92 % (mlp / tri / hash), more than the encoder trained on
values standardised per (layer, type). This module stores, for each layout the encoder was
trained on, the mean and standard deviation of every edge over the training graphs, keyed by
the layout's structure key and the init fingerprint (``layout_key``); the GMN then reads
``(value − mean_edge) / std_edge``.

Measured with the ``cpu`` preset on the demo data (104 objects, 12 epochs), against the default
per-(layer, type) standardisation: validation decoder PSNR 22.86 dB against a floor of 21.14
(another object's embedding), instead of 22.34 against 21.05; a 5-NN classifier within one
architecture (26 val + test queries) mlp / tri / hash 19 / 35 / 38 % instead of 31 / 35 / 8 %;
cross-architecture class and instance retrieval at chance in both. Too few queries to call it
better, so it is an option (``--set value_norm=edge``), not the preset.

A layout without stored statistics (an architecture the encoder never saw) gets only the
per-(layer, type) standardisation: its embedding is a function of its own weights alone, but
the encoder reads its values on another scale than it was trained on.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


def layout_key(structure_key: str, init_fingerprint: str) -> str:
    return f"{structure_key}_{init_fingerprint}"


def edge_stats(values: np.ndarray, floor: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Per-edge mean and standard deviation of (n, E) values, n >= 2. An edge that barely
    varies gets ``floor`` × the layout's median standard deviation (it then stays near 0)."""
    if values.ndim != 2 or values.shape[0] < 2:
        raise ValueError(f"need (n >= 2, E) edge values, got {values.shape}")
    v = np.asarray(values, dtype=np.float64)  # no copy when it is float64 already
    mean, std = v.mean(0), v.std(0)
    med = float(np.median(std)) if std.size else 1.0
    std = np.maximum(std, max(med * floor, 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)


class EdgeValueNorm(nn.Module):
    """Buffers ``<layout key>_mean`` / ``_std`` of shape (E,), one pair per trained layout.

    Loading a state dict creates the buffers it names, so a checkpoint carries its layouts."""

    def keys(self) -> list[str]:
        return sorted(k[: -len("_mean")] for k, _ in self.named_buffers() if k.endswith("_mean"))

    def has(self, key: str) -> bool:
        return hasattr(self, f"{key}_mean")

    @torch.no_grad()
    def set(self, key: str, mean: np.ndarray, std: np.ndarray) -> None:
        self.register_buffer(f"{key}_mean", torch.from_numpy(np.asarray(mean, np.float32)).clone())
        self.register_buffer(f"{key}_std", torch.from_numpy(np.asarray(std, np.float32)).clone())

    def stats(self, key: str) -> tuple[Tensor, Tensor] | None:
        if not self.has(key):
            return None
        return getattr(self, f"{key}_mean"), getattr(self, f"{key}_std")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        for name, value in state_dict.items():
            if name.startswith(prefix) and "." not in name[len(prefix):] and not hasattr(self, name[len(prefix):]):
                self.register_buffer(name[len(prefix):], torch.empty_like(torch.as_tensor(value)))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

