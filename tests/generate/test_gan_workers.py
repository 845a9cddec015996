"""Class GANs trained in worker processes equal the ones trained one after the other."""

from __future__ import annotations

import numpy as np

from nfkit.embed.store import EmbeddingSet
from nfkit.generate.gan import PRESETS
from nfkit.generate.stage import gan_workers, train_class_gans


def _embeddings(n_per_class: int = 6, dim: int = 16) -> EmbeddingSet:
    rng = np.random.default_rng(0)
    classes = ["chair", "table", "car"]
    x = np.concatenate([rng.normal(i, 0.3, (n_per_class, dim)) for i in range(len(classes))]).astype(np.float32)
    n = len(x)
    meta = {
        "class_name": np.array([c for c in classes for _ in range(n_per_class)], dtype=object),
        "object_id": np.array([f"o{i}" for i in range(n)], dtype=object),
        "split": np.array(["train"] * n, dtype=object),
        "arch": np.array(["mlp"] * n, dtype=object),
    }
    return EmbeddingSet(x, meta, np.arange(n, dtype=np.int64), "enc-fp", "gmn")


def test_workers_give_the_same_gans_as_one_process(tmp_path):
    es = _embeddings()
    cfg = PRESETS["tiny"]
    wanted = ["car", "chair", "table"]
    one, trained1, _ = train_class_gans(tmp_path / "a", wanted, es, cfg, es, ["mlp"], False, "cpu", False, workers=1)
    two, trained2, _ = train_class_gans(tmp_path / "b", wanted, es, cfg, es, ["mlp"], False, "cpu", False, workers=2)
    assert trained1 == trained2 == wanted
    for c in wanted:
        for k, v in one[c].generator.state_dict().items():
            np.testing.assert_array_equal(v.numpy(), two[c].generator.state_dict()[k].numpy())
    again, trained, reused = train_class_gans(tmp_path / "b", wanted, es, cfg, es, ["mlp"], False, "cpu", False)
    assert trained == [] and reused == wanted  # stored GANs are reused


def test_worker_count():
    assert gan_workers("cpu", 1) == 1
    assert gan_workers("cuda", 13) == 1
    assert 1 <= gan_workers("cpu", 13) <= 13
