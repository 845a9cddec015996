"""python -m nfkit.bench.fit on a tiny configuration: every figure it reports is there."""

from __future__ import annotations

import json
import math

import pytest

from nfkit.bench.fit import main, mlp_flops_per_sample, mlp_gflop_per_nerf
from nfkit.nerf.specs import REGISTRY


def test_mlp_flops_per_sample():
    # mlp: 144 -> 64 -> 64 -> 64 -> 4, no biases
    assert mlp_flops_per_sample(REGISTRY["mlp"]) == 2 * (144 * 64 + 64 * 64 * 2 + 64 * 4)
    # band_cut: the first layer reads bands 0-4 only (3 dims x 2 x 5 inputs; tri: its 16 channels too)
    assert mlp_flops_per_sample(REGISTRY["mlp"], bands=5) == 2 * (30 * 64 + 64 * 64 * 2 + 64 * 4)
    assert mlp_flops_per_sample(REGISTRY["tri"], bands=5) == 2 * ((16 + 30) * 64 + 64 * 64 * 2 + 64 * 4)
    # hash: 8 encoded inputs; the 8 constant-1 padding inputs are a bias
    assert mlp_flops_per_sample(REGISTRY["hash"]) == mlp_flops_per_sample(REGISTRY["hash"], bands=5) == 2 * (8 * 64 + 64 * 64 * 2 + 64 * 4)
    # a fit's GFLOP: the steps before the cut with every band, the rest with bands 0-4
    from nfkit.fit.config import resolve_config

    config = resolve_config("cpu", {"band_cut": "0.25", "steps": "100"})
    spec = REGISTRY["mlp"]
    expected = 3 * 1000 * (25 * mlp_flops_per_sample(spec) + 75 * mlp_flops_per_sample(spec, bands=5)) / 1e9
    assert mlp_gflop_per_nerf(spec, config, 1000) == pytest.approx(expected)
    # level_cut: the hash family's first layer reads levels 0-1 only (2 x 2 features)
    assert mlp_flops_per_sample(REGISTRY["hash"], levels=2) == 2 * (4 * 64 + 64 * 64 * 2 + 64 * 4)
    config = resolve_config("cpu", {"level_cut": "0.5", "level_cut_from": "2", "steps": "100"})
    spec = REGISTRY["hash"]
    expected = 3 * 1000 * (50 * mlp_flops_per_sample(spec) + 50 * mlp_flops_per_sample(spec, levels=2)) / 1e9
    assert mlp_gflop_per_nerf(spec, config, 1000) == pytest.approx(expected)


def test_fit_bench_reports_psnr_speed_flops_and_the_naive_loop(tmp_path):
    out = tmp_path / "bench"
    rc = main(["--out", str(out), "--objects", "2", "--resolution", "32", "--views", "8", "--arch", "hash",
               "--preset", "tiny", "--naive-objects", "1", "--naive-budget", "1", "--malloc-steps", "0",
               "--set", "batch_nerfs=1"])
    assert rc == 0
    report = json.loads((out / "fit_bench.json").read_text())
    modes = report["results"]["hash"]
    assert set(modes) == {"batched", "one-at-a-time", "workers"}
    # the workers fit the same batches with the same seeds as the batched mode, in other processes
    w, b = modes["workers"], modes["batched"]
    assert w["psnr"].keys() == b["psnr"].keys()
    for key in b["psnr"]:
        assert w["psnr"][key] == pytest.approx(b["psnr"][key], abs=0.5)
    assert w["wall_seconds"] > w["seconds"]  # the whole run includes the workers' start-up
    for r in modes.values():
        assert r["nerfs"] == 2 and r["nerfs_per_min"] > 0
        assert math.isfinite(r["mean_psnr"]) and math.isfinite(r["mean_fg_psnr"])
        assert r["mean_fg_psnr"] < r["mean_psnr"]  # the black background inflates the full-image figure
        assert r["mlp_gflop_per_nerf"] > 0
        assert 0 < r["eval_seconds_per_nerf"] < r["seconds_per_nerf"]
    naive = report["naive"]["hash"]["objects"][0]
    assert naive["steps"] > 0 and naive["curve"] and naive["speedup"] > 0
    # the naive loop is compared with nfkit's fitting time (its held-out evaluation left out),
    # taken right before and right after the naive run
    batched = modes["batched"]
    assert report["naive"]["hash"]["nfkit_seconds_per_nerf"] == batched["seconds_per_nerf"] - batched["eval_seconds_per_nerf"]
    assert 0 < naive["nfkit_seconds_before"] and 0 < naive["nfkit_seconds_after"]
    fitting = 0.5 * (naive["nfkit_seconds_before"] + naive["nfkit_seconds_after"])
    assert naive["nfkit_seconds"] == fitting
    assert naive["speedup"] == naive["seconds_to_target"] / fitting
    assert naive["seconds_to_target"] <= naive["seconds"]
    assert report["matmul_gflops"] > 0
    md = (out / "fit_bench.md").read_text()
    assert "foreground PSNR" in md and "Naive torch loop" in md and "% of matmul peak" in md
    assert f"{naive['nfkit_seconds_before']:.2f} / {naive['nfkit_seconds_after']:.2f}" in md
    assert "Mode `workers`" in md and f"hash {w['wall_seconds']:.1f} s against {w['seconds']:.1f} s" in md
    assert "{" not in md  # every field filled in
    for r in modes.values():  # the machine's speed around each row, in the report
        assert r["matmul_gflops_before"] > 0 and r["matmul_gflops_after"] > 0
        assert f"{r['matmul_gflops_before']:.0f} / {r['matmul_gflops_after']:.0f}" in md
    assert (out / "fit_bench-hash.png").is_file()


def test_summary_collects_what_ran_and_names_what_did_not(tmp_path):
    from nfkit.bench import summary

    out = tmp_path / "bench"
    main(["--out", str(out), "--objects", "1", "--resolution", "32", "--views", "8", "--arch", "mlp",
          "--preset", "tiny", "--naive-objects", "0", "--malloc-steps", "0", "--modes", "batched"])
    assert summary.main(["--out", str(out)]) == 0
    s = json.loads((out / "bench.json").read_text())
    assert [r["arch"] for r in s["fit"]] == ["mlp"] and s["fit"][0]["nerfs_per_min"] > 0
    md = (out / "bench.md").read_text()
    assert "| procedural | mlp |" in md
    assert "not measured: `python -m nfkit.bench.graphs`" in md and "not measured: `nfkit classify --zero-shot`" in md


def test_naive_crossing_time_interpolates_between_the_checks_around_the_target():
    from nfkit.bench.naive_fit import crossing_time

    curve = [[20, 1.0, 20.0], [40, 2.0, 24.0], [60, 3.0, 26.0]]
    assert crossing_time(curve, 25.0) == 2.5  # halfway from 24 dB (2 s) to 26 dB (3 s)
    assert crossing_time(curve, 24.0) == 2.0  # a check that hits the target exactly
    assert crossing_time(curve, 19.0) == 1.0  # reached at the first check: nothing to interpolate from
    with pytest.raises(ValueError, match="never reaches"):
        crossing_time(curve, 27.0)


def test_naive_compare_times_nfkit_next_to_each_naive_run(monkeypatch):
    """nfkit's batch is fitted right before and right after each naive run; two objects of one
    batch share the fit between their naive runs (the first one's "after" is the second's "before")."""
    import dataclasses
    from types import SimpleNamespace

    import nfkit.bench.naive_fit as naive_mod
    import nfkit.fit.trainer as trainer
    from nfkit.bench.fit import naive_compare
    from nfkit.fit.config import PRESETS

    events, fits = [], iter([2.0, 4.0, 6.0, 8.0, 10.0])

    def fake_fit_batch(spec, init, batch, config, seed=None):
        seconds = next(fits)
        events.append(("fit", tuple(s.key for s in batch), seed, seconds))
        return [SimpleNamespace(seconds=seconds + 1.0, eval_seconds=1.0) for _ in batch]

    def fake_naive_fit(spec, init, scene, config, target, budget_seconds):
        events.append(("naive", scene.key, budget_seconds))
        return {"steps": 20, "seconds": 30.0, "psnr": target, "reached": True, "curve": [], "seconds_to_target": 30.0}

    monkeypatch.setattr(trainer, "fit_batch", fake_fit_batch)
    monkeypatch.setattr(naive_mod, "naive_fit", fake_naive_fit)
    scenes = [SimpleNamespace(key=k) for k in "abc"]
    config = dataclasses.replace(PRESETS["tiny"], batch_nerfs=2, seed=7)
    reference = {"psnr": {"a": 30.0, "b": 31.0, "c": 32.0}, "seconds_per_nerf": 3.0, "eval_seconds_per_nerf": 0.5}
    out = naive_compare(REGISTRY["mlp"], scenes, config, reference, n_objects=3, budget=15.0)
    assert events == [
        ("fit", ("a", "b"), 7, 2.0), ("naive", "a", 30.0), ("fit", ("a", "b"), 7, 4.0),  # a: 2 s before, 4 s after
        ("naive", "b", 60.0), ("fit", ("a", "b"), 7, 6.0),  # b: a's "after" is its "before"
        ("fit", ("c",), 9, 8.0), ("naive", "c", 120.0), ("fit", ("c",), 9, 10.0),  # c: another batch, its own fits
    ]
    rows = out["objects"]
    assert [(r["nfkit_seconds_before"], r["nfkit_seconds_after"]) for r in rows] == [(2.0, 4.0), (4.0, 6.0), (8.0, 10.0)]
    assert [r["speedup"] for r in rows] == pytest.approx([10.0, 6.0, 10.0 / 3])
    assert out["nfkit_seconds_per_nerf"] == 2.5  # the batched row's, for reference
