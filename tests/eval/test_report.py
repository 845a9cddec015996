"""``python -m nfkit.eval.report RUN``: every number read back from the artifacts."""

from __future__ import annotations

import h5py
import numpy as np

from nfkit.eval.report import build_report, main
from nfkit.nerf.init import get_or_create_init
from nfkit.nerf.specs import ArchSpec
from nfkit.nerf.store import NerfRecord, write_nerf_shard

SPECS = [ArchSpec("small-mlp", "mlp", hidden_layers=1, hidden_dim=4, freq_bands=1),
         ArchSpec("small-hash", "hash", hidden_layers=1, hidden_dim=4, hash_levels=1, hash_log2_size=3, hash_base_res=2)]


def _run_folder(root):
    """A run folder whose own path holds a folder named ``inits``, with the shared inits in
    nerfs/inits/ (another artifact kind) next to two architectures' shards."""
    run = root / "inits" / "run"
    rng = np.random.default_rng(0)
    for spec in SPECS:
        init = get_or_create_init(spec, run / "nerfs" / "inits", seed=0)
        for k in range(2):
            recs = [
                NerfRecord(f"o{k}{i}", "chair", "train", spec, init.fingerprint,
                           {n: np.zeros(s, np.float32) for n, s in spec.param_shapes().items()},
                           psnr=float(rng.uniform(15, 30)), fit_seconds=float(rng.uniform(1, 9)),
                           psnr_on="held-out-train-views" if i else "test-views")
                for i in range(3)
            ]
            write_nerf_shard(run / "nerfs" / spec.name / f"shard-{k}.h5", recs)
    return run


def _truth(run, arch):
    """(count, psnrs, seconds) read from the shards with h5py, independently of nfkit."""
    psnr, secs = [], []
    for path in sorted((run / "nerfs" / arch).glob("*.h5")):
        with h5py.File(path, "r") as f:
            psnr += f["meta/psnr"][()].astype(float).tolist()
            secs += f["meta/fit_seconds"][()].astype(float).tolist()
    return len(psnr), np.array(psnr), np.array(secs)


def _table_row(text, arch):
    (line,) = [ln for ln in text.splitlines() if ln.startswith(f"| {arch} |")]
    return [c.strip() for c in line.strip("|").split("|")]


def test_report_numbers_match_the_artifacts(tmp_path):
    run = _run_folder(tmp_path)
    text = build_report(run)
    assert "## fit-nerfs" in text
    for spec in SPECS:
        n, psnr, secs = _truth(run, spec.name)
        row = _table_row(text, spec.name)
        assert int(row[1]) == n == 6
        assert [float(v) for v in row[2:5]] == [round(psnr.mean(), 2), round(psnr.min(), 2), round(psnr.max(), 2)]
        assert "transforms_test.json views (2)" in row[5] and "held-out training views" in row[5] and "(4)" in row[5]
        assert float(row[6]) == round(secs.mean(), 1)
    assert "inits" not in {_table_row(text, s.name)[0] for s in SPECS}
    worst = min((p, a) for a in (s.name for s in SPECS) for p in _truth(run, a)[1])
    assert f"Lowest held-out PSNR: {worst[1]} " in text and f"{worst[0]:.1f} dB" in text


def test_report_cli_writes_the_file(tmp_path, capsys):
    run = _run_folder(tmp_path)
    assert main([str(run)]) == 0
    assert (run / "report.md").read_text() == build_report(run)
    assert main([str(tmp_path / "missing")]) == 1


def test_every_section_is_there_and_says_when_its_inputs_are_missing(tmp_path):
    from nfkit.eval.report import HEADINGS, NOT_AVAILABLE

    run = _run_folder(tmp_path)
    (run / "classify").mkdir()
    (run / "classify" / "zero-shot.md").write_text("| method | accuracy % |\n|---|---:|\n| nerf2clip | 42.0 |\n")
    text = build_report(run)
    lines = text.splitlines()
    assert all(h in lines for h in HEADINGS)
    assert [lines.index(h) for h in HEADINGS] == sorted(lines.index(h) for h in HEADINGS)
    missing = [ln for ln in lines if ln.startswith(NOT_AVAILABLE)]
    for what in ("dataset.json", "train_log.json", "embedding shards", "classify.json", "retrieve.json",
                 "map-clip.json", "quality.md"):
        assert any(what in ln for ln in missing), what
    # a stage's own table is included as it wrote it, not recomputed
    assert "| nerf2clip | 42.0 |" in text and not any("zero-shot.md" in ln for ln in missing)
    assert not (run / "report").exists() or not any((run / "report").iterdir())


def test_the_encoder_section_reports_the_render_decoder(tmp_path):
    import json

    from nfkit.eval.report import _encoder_section

    enc = tmp_path / "encoder"
    enc.mkdir()
    (enc / "best.h5").write_bytes(b"")  # the section only checks that it is there
    log = {"preset": "cpu", "config": {"loss": "r+c", "epochs": 1},
           "history": [{"epoch": 1, "loss": 0.1, "s_per_step": 0.5, "val_psnr": 22.0, "val_psnr_floor": 21.0}]}
    (enc / "train_log.json").write_text(json.dumps(log))
    assert "Render decoder" not in "\n".join(_encoder_section(tmp_path))
    log["render_decoder"] = {"refit_steps": 800, "refit_nerfs": 234, "refit_seconds": 120.4, "refit_loss_first": 0.733,
                             "refit_loss_last": 0.382, "val_own_grid_psnr": 20.982, "val_own_grid_psnr_training_decoder": 16.501,
                             "val_own_grid_nerfs": 6}
    (enc / "train_log.json").write_text(json.dumps(log))
    text = "\n".join(_encoder_section(tmp_path))
    assert "Render decoder" in text and "800 steps on 234 training NeRFs in 120 s, loss 0.733 -> 0.382" in text
    assert "PSNR on 6 validation NeRFs" in text and "20.98 dB, against 16.50 dB" in text
