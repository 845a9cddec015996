"""``python -m nfkit.eval.smoke_check RUN``: it fails, naming the artifact, on a missing,
short or unreadable output, and passes the complete ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nfkit.eval import smoke_check as sc
from nfkit.eval.report import HEADINGS, NOT_AVAILABLE
from nfkit.nerf.init import get_or_create_init
from nfkit.nerf.specs import ArchSpec
from nfkit.nerf.store import NerfRecord, write_nerf_shard

SPEC = ArchSpec("small-mlp", "mlp", hidden_layers=1, hidden_dim=4, freq_bands=1)
ARCHS = (SPEC.name,)


@pytest.fixture
def run(tmp_path):
    """A workspace with a dataset of 3 chairs, one per split."""
    from nfkit.data.synth import SynthConfig, generate_dataset

    ws = tmp_path / "ws"
    generate_dataset(ws / "data", SynthConfig(resolution=8, objects_per_class=3, views=2, classes=("chair",),
                                              val_fraction=0.34, test_fraction=0.34))
    return ws


def _expected(run, **kw) -> sc.Expected:
    exp = sc.Expected(ARCHS, **kw)
    assert sc.check_dataset(run, exp) == []
    assert exp.n == 3 and exp.classes == ("chair",)
    return exp


def _write_nerfs(run, n: int | None = None):
    from nfkit.data.multiview import scan_dataset

    init = get_or_create_init(SPEC, run / "nerfs" / "inits", seed=0)
    recs = [NerfRecord(e.object_id, e.class_name, e.split, SPEC, init.fingerprint,
                       {k: np.zeros(s, np.float32) for k, s in SPEC.param_shapes().items()}, psnr=25.0)
            for e in scan_dataset(run / "data")[:n]]
    return write_nerf_shard(run / "nerfs" / SPEC.name / "shard-0.h5", recs)


def test_an_empty_folder_fails_and_names_the_dataset(tmp_path, capsys):
    assert sc.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "dataset: " in err and "dataset.json" in err
    assert "nerfs: not checked" in err and "report: not checked" in err
    assert sc.main([str(tmp_path / "nowhere")]) == 1


def test_one_nerf_per_object_and_a_short_shard(run):
    exp = _expected(run)
    _write_nerfs(run)
    assert sc.check_nerfs(run, exp) == []
    _write_nerfs(run, n=2)
    (problem,) = sc.check_nerfs(run, exp)
    assert "2 NeRFs of architecture small-mlp, expected 3" in problem and str(run / "nerfs") in problem


def test_a_truncated_shard_is_named(run):
    shard = _write_nerfs(run)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 3])
    problems = sc.smoke_check(run, ARCHS)
    nerf_problems = [p for p in problems if p.startswith("nerfs: ")]
    assert nerf_problems and "shard-0.h5" in nerf_problems[0]
    # every other stage is reported too, by its missing artifact
    for stage in ("graphs", "encoder", "embeddings", "clip", "classify", "retrieve", "generate", "report"):
        assert any(p.startswith(f"{stage}: ") for p in problems), stage


def test_the_transfer_matrix_needs_a_row_per_training_set_and_a_column_per_arch(run):
    exp = _expected(run)
    out = run / "classify"
    out.mkdir()
    (out / "classify.json").write_text(json.dumps({"accuracy": {"all": {"small-mlp": 0.5, "tri": 1.5}},
                                                   "classes": ["chair"]}))
    problems = sc.check_classify(run, exp)
    text = "\n".join(problems)
    assert "transfer matrix rows ['all'], expected ['all', 'small-mlp']" in text
    assert "row all has columns ['small-mlp', 'tri']" in text
    assert "accuracy outside [0, 1] for ['tri']" in text
    assert "classifier-all.h5" in text and "classifier-small-mlp.h5" in text
    assert "zero-shot.json" in text


def test_the_retrieval_tables_need_every_pair(run):
    exp = sc.Expected(("mlp", "tri"))
    assert sc.check_dataset(run, exp) == []
    out = run / "retrieve"
    out.mkdir()
    (out / "retrieve.json").write_text(json.dumps({"instance": {"ALL/ALL": {}, "mlp/tri": {}}, "class": {"ALL": {}},
                                                   "n_embeddings": 2}))
    text = "\n".join(sc.check_retrieve(run, exp))
    assert "instance table rows ['ALL/ALL', 'mlp/tri'], expected ['ALL/ALL', 'mlp/tri', 'tri/mlp']" in text
    assert "clip-retrieval.json" in text and "query-photo-*.png" in text and "query-shard-*.png" in text
    assert "class-level" not in text and "test embeddings" not in text


def test_generated_embeddings_per_class(run):
    from nfkit.embed.store import META_STR, write_embedding_shard

    exp = _expected(run, gan_samples=4)
    n = 3
    meta = {k: [""] * n for k in META_STR}
    meta.update(object_id=[f"gan-{i:04d}" for i in range(n)], class_name=["chair"] * n, split=["generated"] * n,
                arch=["small-mlp"] * n)
    write_embedding_shard(run / "generate" / "generated.h5", np.zeros((n, 4), np.float32), meta, list(range(n)),
                          encoder_fingerprint="e0", encoder_kind="test")
    text = "\n".join(sc.check_generate(run, exp))
    assert "{'chair': 3} per class, expected 4 each" in text
    assert "gan/chair.h5" in text and "quality.json" in text and "interpolate" in text
    # the CLIP check of the renders: one row per class and source
    from nfkit.generate.clip_check import SOURCES

    q = {"rows": [{"class_name": "chair"}], "clip_check": [{"class": "chair", "source": "generated"}]}
    (run / "generate" / "quality.json").write_text(json.dumps(q))
    assert "CLIP check rows" in "\n".join(sc.check_generate(run, exp))
    q["clip_check"] = [{"class": "chair", "source": s} for s in SOURCES]
    (run / "generate" / "quality.json").write_text(json.dumps(q))
    assert "quality.json" not in "\n".join(sc.check_generate(run, exp))


def test_the_report_needs_every_section_and_no_missing_input(run):
    exp = _expected(run)
    tables = ["### Classification accuracy", "### Transfer matrices", "### Instance retrieval",
              "### Class-level retrieval", "### Quality of the generated embeddings"]
    path = run / "report.md"
    assert sc.check_report(run, exp) == [f"{path}: missing"]
    (run / "pic.png").write_bytes(b"")
    path.write_text("\n".join([*HEADINGS, *tables, "![a picture](pic.png)"]) + "\n")
    assert sc.check_report(run, exp) == []
    path.write_text("\n".join([*HEADINGS[:-1], *tables[1:], f"{NOT_AVAILABLE} no generate/quality.md._",
                               "![gone](views/gone.png)"]) + "\n")
    text = "\n".join(sc.check_report(run, exp))
    assert f"no section {HEADINGS[-1]!r}" in text
    assert "no table '### Classification accuracy'" in text
    assert "no generate/quality.md" in text
    assert "picture views/gone.png does not exist" in text
