"""A tiny workspace for the encoder tests: NeRF shards of three small architectures built from
their shared inits plus per-object noise (no fitting), and their graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nfkit.graphs.convert import build_graphs
from nfkit.nerf.init import create_init
from nfkit.nerf.specs import get_arch
from nfkit.nerf.store import NerfRecord, write_nerf_shard

ARCHS = ("mlp-32h", "tri-16w", "hash-11t")
CLASSES = ("chair", "lamp")
SPLITS = ("train", "train", "train", "val", "test")


def make_nerfs(root: Path, archs=ARCHS, init_seed: int = 0, noise_seed: int = 0) -> Path:
    rng = np.random.default_rng(noise_seed)
    for name in archs:
        spec = get_arch(name)
        init = create_init(spec, init_seed)
        records = []
        for c in CLASSES:
            for i, split in enumerate(SPLITS):
                params = {k: (v + rng.normal(0, 0.05, v.shape) * (np.abs(v).mean() + 1e-3)).astype(np.float32)
                          for k, v in init.params.items()}
                # a visible object: raise the density output of the last layer
                last = f"mlp.{spec.hidden_layers}"
                params[last][3] += 0.3
                records.append(NerfRecord(f"{c[:2]}{i}", c, split, spec, init.fingerprint, params))
        write_nerf_shard(root / name / "shard-0.h5", records)
    return root


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("enc_ws")
    make_nerfs(ws / "nerfs")
    results = list(build_graphs([ws / "nerfs"], ws / "graphs"))
    assert all(r.status == "built" for r in results), [r.message for r in results]
    return ws
