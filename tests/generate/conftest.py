"""Fixtures of the generate tests: one torch thread (tiny networks are slower with more)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def gen_workspace(tmp_path_factory):
    """A tiny workspace with everything ``generate`` reads: NeRF shards (from saved shared inits
    plus noise), graphs, a tiny r+c encoder with a decoder, embeddings and a classifier."""
    from nfkit.embed.store import load_embeddings
    from nfkit.encoder.config import resolve_config
    from nfkit.encoder.embed import embed_graphs
    from nfkit.encoder.train import pretrain_encoder
    from nfkit.graphs.convert import build_graphs
    from nfkit.nerf.init import create_init, init_path, save_init
    from nfkit.nerf.specs import get_arch
    from nfkit.tasks.classifier import classifier_config
    from nfkit.tasks.classify import run_classify
    from tests.encoder.conftest import ARCHS, make_nerfs

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ws = tmp_path_factory.mktemp("gen_ws")
        make_nerfs(ws / "nerfs")
        for name in ARCHS:  # make_nerfs draws its noise around create_init(spec, 0)
            spec = get_arch(name)
            save_init(create_init(spec, 0), init_path(spec, ws / "nerfs" / "inits"))
        assert all(r.status == "built" for r in build_graphs([ws / "nerfs"], ws / "graphs"))
        pretrain_encoder(ws / "graphs", ws / "nerfs", ws / "encoder", resolve_config("tiny", {"loss": "r+c"}), progress=False)
        s = embed_graphs(ws / "graphs", ws / "encoder" / "best.h5", ws / "embeddings", progress=False)
        assert not s.failed, s.failed
        run_classify(ws / "embeddings", ws / "classify", classifier_config("tiny"), ["all"])
        assert len(load_embeddings(ws / "embeddings").select(split="test")) > 0
    finally:
        torch.set_num_threads(n)
    return ws
