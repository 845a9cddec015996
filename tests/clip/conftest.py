"""A tiny workspace for the CLIP tests: a synth dataset (3 classes x 4 objects, 4 views of
24 px), random NeRFs of those objects (their ``source`` is the object folder), embeddings of
two architectures that cluster by class, and a seeded random micro CLIP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nfkit.embed.store import META_STR, write_embedding_shard

CLASSES = ("airplane", "car", "chair")


def make_dataset(root: Path) -> Path:
    from nfkit.data.synth import SynthConfig, generate_dataset

    cfg = SynthConfig(resolution=24, objects_per_class=4, views=4, classes=CLASSES, val_fraction=0.25,
                      test_fraction=0.25, seed=1)
    generate_dataset(root, cfg)
    return root


def make_nerfs(folder: Path, dataset: Path, archs=("mlp",)) -> Path:
    from nfkit.data.multiview import scan_dataset
    from nfkit.nerf.specs import REGISTRY
    from nfkit.nerf.store import NerfRecord, write_nerf_shard

    rng = np.random.default_rng(0)
    entries = scan_dataset(dataset)
    for arch in archs:
        spec = REGISTRY[arch]
        recs = [NerfRecord(e.object_id, e.class_name, e.split, spec, "init0",
                           {k: rng.normal(size=s).astype(np.float32) * 0.1 for k, s in spec.param_shapes().items()},
                           source=str(e.path))
                for e in entries]
        write_nerf_shard(folder / arch / "shard-0.h5", recs)
    return folder


def make_embeddings(folder: Path, dataset: Path, archs=("mlp", "tri"), encoder: str = "enc0", dim: int = 16, seed: int = 0) -> Path:
    from nfkit.data.multiview import scan_dataset

    rng = np.random.default_rng(seed)
    entries = scan_dataset(dataset)
    centres = {c: rng.normal(size=dim) * 3 for c in CLASSES}
    offsets = {e.object_id: rng.normal(size=dim) for e in entries}
    for arch in archs:
        emb = np.stack([centres[e.class_name] + offsets[e.object_id] + 0.1 * rng.normal(size=dim) for e in entries])
        meta = {k: [""] * len(entries) for k in META_STR}
        meta.update(object_id=[e.object_id for e in entries], class_name=[e.class_name for e in entries],
                    split=[e.split for e in entries], arch=[arch] * len(entries))
        write_embedding_shard(folder / f"{arch}.h5", emb.astype(np.float32), meta, list(range(len(entries))),
                              encoder_fingerprint=encoder, encoder_kind="test")
    return folder


@pytest.fixture(scope="session")
def clip_ws(tmp_path_factory) -> Path:
    """<ws>/data (dataset), <ws>/nerfs (mlp), <ws>/embeddings (mlp, tri)."""
    ws = tmp_path_factory.mktemp("clipws")
    make_dataset(ws / "data")
    make_nerfs(ws / "nerfs", ws / "data")
    make_embeddings(ws / "embeddings", ws / "data")
    return ws


@pytest.fixture(scope="session")
def micro_clip():
    from nfkit.clip.backend import load_clip

    return load_clip("nfkit-clip-micro", None)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
