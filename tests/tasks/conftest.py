"""Tiny embedding folders for the classify / retrieve tests (class-clustered Gaussians)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nfkit.embed.store import META_STR, write_embedding_shard

CLASSES = ("airplane", "car", "chair", "lamp")
SPLITS = {"train": 6, "val": 2, "test": 3}


def make_embeddings(
    folder: Path,
    archs=("mlp", "tri", "hash"),
    unseen=("mlp-2l",),
    dim: int = 16,
    arch_shift: float = 0.0,
    noise: float = 0.3,
    encoder: str = "enc0",
    seed: int = 0,
) -> Path:
    """One shard per architecture: class centre + object offset (+ arch offset) + noise.

    Same object = same class centre + object offset in every architecture, so instance
    retrieval works when ``arch_shift`` is small. Unseen architectures get test rows only.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CLASSES), dim)) * 3.0
    objects = []
    for c, name in enumerate(CLASSES):
        for split, n in SPLITS.items():
            for i in range(n):
                objects.append((name, f"{name[:2]}{split}{i}", split, centres[c] + rng.normal(size=dim)))
    for arch in [*archs, *unseen]:
        shift = rng.normal(size=dim) * arch_shift
        rows = [o for o in objects if arch in archs or o[2] == "test"]
        emb = np.stack([o[3] + shift + rng.normal(size=dim) * noise for o in rows]).astype(np.float32)
        meta = {k: [""] * len(rows) for k in META_STR}
        meta.update(
            object_id=[o[1] for o in rows], class_name=[o[0] for o in rows], split=[o[2] for o in rows],
            arch=[arch] * len(rows),
        )
        write_embedding_shard(folder / f"{arch}.h5", emb, meta, list(range(len(rows))),
                              encoder_fingerprint=encoder, encoder_kind="test")
    return folder


@pytest.fixture
def emb_dir(tmp_path: Path) -> Path:
    return make_embeddings(tmp_path / "embeddings")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
