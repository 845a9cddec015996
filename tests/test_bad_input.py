"""Bad input is refused with one ``error: ...`` line and a non-zero exit, through the CLI
(issue 7, "Found on a fresh clone", item 4). Each test failed before its fix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.data.multiview import load_object
from nfkit.data.synth import SynthConfig, generate_dataset
from nfkit.nerf import field, interop
from nfkit.nerf.specs import get_arch
from nfkit.nerf.store import NerfRecord, iter_nerfs, write_nerf_shard

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
QUICK = ["--preset", "tiny", "--steps", "2", "--rays", "16", "--samples", "8", "--grid-res", "4",
         "--resolution", "16", "--no-progress", "--device", "cpu"]


def _cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def _one_error_line(result) -> str:
    """The run failed with exit 1 and printed one-line errors, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    text = result.output
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert errors, text
    return "\n".join(errors)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad_input") / "data"
    generate_dataset(root, SynthConfig(resolution=16, objects_per_class=3, views=4, classes=("chair",), seed=5))
    return root


@pytest.fixture(scope="module")
def nerfs(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bad_input_nerfs") / "nerfs"
    result = _cli("fit-nerfs", dataset, "--arch", "mlp", "--out", out, "--set", "batch_nerfs=1", *QUICK)
    assert result.exit_code == 0, result.output
    return out


def _copy_object(dataset: Path, tmp_path: Path) -> Path:
    import shutil

    src = sorted(p for p in (dataset / "03001627").iterdir())[0]
    dst = tmp_path / "data" / "03001627" / src.name
    shutil.copytree(src, dst)
    return tmp_path / "data"


def _edit_transforms(root: Path, edit) -> Path:
    (tf,) = root.rglob("transforms_train.json")
    meta = json.loads(tf.read_text())
    edit(meta)
    tf.write_text(json.dumps(meta))
    return tf


# ----------------------------------------------------------------------------- cameras
@pytest.mark.parametrize("bad", ["nan", "inf", "singular"])
def test_fit_nerfs_refuses_the_cameras_check_data_refuses(dataset, tmp_path, bad):
    root = _copy_object(dataset, tmp_path)

    def edit(meta):
        m = meta["frames"][1]["transform_matrix"]
        if bad == "singular":
            m[0][:3] = [0.0, 0.0, 0.0]
        else:
            m[0][3] = float(bad)

    tf = _edit_transforms(root, edit)
    assert bad in tf.read_text().lower() or bad == "singular"
    check = _one_error_line(_cli("check-data", root, "--no-progress"))
    fit = _one_error_line(_cli("fit-nerfs", root, "--arch", "mlp", "--out", tmp_path / "n", *QUICK))
    assert "frame 1" in check and "frame 1" in fit and "transform_matrix" in fit
    assert not list((tmp_path / "n").rglob("shard-*.h5"))


def test_a_non_numeric_camera_angle_names_the_file_and_the_key(dataset, tmp_path):
    root = _copy_object(dataset, tmp_path)
    tf = _edit_transforms(root, lambda m: m.__setitem__("camera_angle_x", "wide"))
    msg = _one_error_line(_cli("check-data", root, "--no-progress"))
    assert str(tf) in msg and "camera_angle_x" in msg and "'wide'" in msg


# ----------------------------------------------------------------------------- images
@pytest.mark.parametrize("mode", ["I;16", "L", "LA", "P"])
def test_greyscale_palette_and_16_bit_images_are_read_with_their_values(dataset, tmp_path, mode):
    root = _copy_object(dataset, tmp_path)
    png = sorted(root.rglob("*.png"))[0]
    grey = np.linspace(0.0, 1.0, 16 * 16).reshape(16, 16)
    if mode == "I;16":
        Image.fromarray((grey * 65535).round().astype(np.uint16)).save(png)
        assert Image.open(png).mode.startswith("I")
        want_rgb, want_a = grey, np.ones_like(grey)
    elif mode == "L":
        Image.fromarray((grey * 255).round().astype(np.uint8), "L").save(png)
        want_rgb, want_a = (grey * 255).round() / 255, np.ones_like(grey)
    elif mode == "LA":
        la = np.stack([(grey * 255).round(), (grey[::-1] * 255).round()], -1).astype(np.uint8)
        Image.fromarray(la, "LA").save(png)
        want_rgb, want_a = la[..., 0] / 255, la[..., 1] / 255
    else:
        pal = Image.fromarray((grey * 255).round().astype(np.uint8), "L").convert("P")
        pal.save(png)
        want_rgb, want_a = np.asarray(pal.convert("L")) / 255, np.ones_like(grey)
    assert _cli("check-data", root, "--no-progress").exit_code == 0
    obj = load_object(png.parent.parent)
    view = obj.images[0]
    np.testing.assert_allclose(view[..., 0], want_rgb, atol=1e-6)
    np.testing.assert_allclose(view[..., 2], want_rgb, atol=1e-6)
    np.testing.assert_allclose(view[..., 3], want_a, atol=1e-6)


def test_an_unsupported_image_mode_is_refused_clearly(dataset, tmp_path):
    root = _copy_object(dataset, tmp_path)
    png = sorted(root.rglob("*.png"))[0]
    Image.fromarray(np.zeros((16, 16), np.float32), "F").save(png.with_suffix(".tiff"))
    png.unlink()
    png.with_suffix(".tiff").rename(png)  # a float TIFF named .png
    msg = _one_error_line(_cli("check-data", root, "--no-progress"))
    assert str(png) in msg and "mode 'F'" in msg


# ----------------------------------------------------------------------------- non-finite weights
def test_a_diverged_fit_is_not_saved_and_fails_naming_the_nerf(dataset, tmp_path):
    out = tmp_path / "nerfs"
    result = _cli("fit-nerfs", dataset, "--arch", "mlp", "--out", out, "--lr", "1e12", "--set", "batch_nerfs=1", *QUICK)
    msg = _one_error_line(result)
    assert "diverged" in msg and "mlp chair/" in msg
    assert not list(out.rglob("shard-*.h5"))


def test_a_diverged_nerf_is_dropped_and_the_good_ones_are_kept(dataset, tmp_path):
    import dataclasses

    from nfkit.fit.config import PRESETS
    from nfkit.fit.driver import fit_dataset
    from nfkit.fit.trainer import fit_batch

    def one_diverges(spec, init, scenes, config, **kw):
        results = fit_batch(spec, init, scenes, config, **kw)
        if scenes[0].key.endswith(sorted(p.name for p in (dataset / "03001627").iterdir())[1]):
            results[0].params["mlp.1"][0, 0] = np.nan
        return results

    config = dataclasses.replace(PRESETS["tiny"], steps=2, rays=16, samples=8, grid_res=4, resolution=16, batch_nerfs=1)
    summary = fit_dataset(dataset, tmp_path / "n", [get_arch("mlp")], config, fit_fn=one_diverges)
    assert len(summary.diverged) == 1 and summary.diverged[0].startswith("mlp chair/")
    kept = sorted(r.key for r in iter_nerfs(tmp_path / "n"))
    assert len(kept) == 2 and summary.diverged[0].split(" ")[1] not in kept


def _nan_shard(path: Path, key=("chair", "bad")) -> Path:
    spec = get_arch("mlp")
    params = {k: v.numpy() for k, v in field.init_params(spec, torch.Generator().manual_seed(0)).items()}
    rec = NerfRecord(key[1], key[0], "train", spec, "init-x", params)
    write_nerf_shard(path, [rec])
    import h5py

    with h5py.File(path, "r+") as f:
        f["params"]["mlp.1"][0, 3, 5] = np.nan
    return path


def test_writing_nan_weights_is_refused(tmp_path):
    spec = get_arch("mlp")
    params = {k: v.numpy() for k, v in field.init_params(spec, torch.Generator().manual_seed(0)).items()}
    params["mlp.2"][0, 0] = np.inf
    from nfkit.io.artifacts import ArtifactError

    with pytest.raises(ArtifactError, match=r"NeRF chair/x has non-finite weights .*mlp\.2"):
        write_nerf_shard(tmp_path / "s.h5", [NerfRecord("x", "chair", "train", spec, "i", params)])
    assert not list(tmp_path.iterdir())


def test_build_graphs_and_render_refuse_nan_weights_naming_the_nerf(nerfs, tmp_path):
    bad = _nan_shard(tmp_path / "in" / "bad.h5")
    msg = _one_error_line(_cli("build-graphs", bad.parent, "--out", tmp_path / "g", "--no-progress"))
    assert "chair/bad" in msg and "non-finite" in msg
    msg = _one_error_line(_cli("render", bad, "--out", tmp_path / "v", "--turntable", "1", "--resolution", "8",
                               "--samples", "4", "--grid-res", "4", "--no-progress", "--device", "cpu"))
    assert "chair/bad" in msg and "non-finite" in msg and str(bad) in msg


def test_import_nerfs_refuses_nan_weights_and_text_files(tmp_path):
    spec = get_arch("mlp")
    params = {k: v.numpy() for k, v in field.init_params(spec, torch.Generator().manual_seed(0)).items()}
    params["mlp.0"][1, 1] = np.nan
    good = {k: np.nan_to_num(v) for k, v in params.items()}
    for obj, p in (("a1", params), ("a2", good)):
        folder = tmp_path / "ref" / "02691156" / obj
        folder.mkdir(parents=True)
        torch.save(interop.canonical_to_reference(spec, p), folder / "nerf_weights.pth")
    text = tmp_path / "ref" / "02691156" / "a3" / "nerf_weights.pth"
    text.parent.mkdir()
    text.write_text("these are not weights\n")
    msg = _one_error_line(_cli("import-nerfs", tmp_path / "ref", "--arch", "mlp", "--out", tmp_path / "s", "--no-progress"))
    assert "02691156/a1 has non-finite weights" in msg and f"{text}: not a readable torch weights file" in msg
    assert [r.object_id for r in iter_nerfs(tmp_path / "s")] == ["a2"]  # the good one is kept
    init_txt = tmp_path / "init.pth"
    init_txt.write_text("text")
    msg = _one_error_line(_cli("import-nerfs", tmp_path / "ref", "--arch", "mlp", "--out", tmp_path / "s2",
                               "--init", init_txt, "--no-progress"))
    assert str(init_txt) in msg


# ----------------------------------------------------------------------------- render
TURN = ["--turntable", "1", "--resolution", "8", "--samples", "4", "--grid-res", "4", "--no-progress", "--device", "cpu"]


def test_render_reports_a_corrupt_shard_and_renders_the_others(nerfs, tmp_path):
    import shutil

    folder = tmp_path / "in"
    shutil.copytree(nerfs / "mlp", folder)
    shards = sorted(folder.glob("shard-*.h5"))
    assert len(shards) == 3
    shards[0].write_bytes(shards[0].read_bytes()[:200])  # truncated
    result = _cli("render", folder, "--out", tmp_path / "v", *TURN)
    msg = _one_error_line(result)
    assert str(shards[0]) in msg
    assert len(list((tmp_path / "v").rglob("*.png"))) == 2
    assert "rendered 2 NeRF(s)" in result.output


def test_render_refuses_two_shards_holding_the_same_object(nerfs, tmp_path):
    import shutil

    first = sorted((nerfs / "mlp").glob("shard-*.h5"))[0]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(first, tmp_path / "a" / "s.h5")
    shutil.copy(first, tmp_path / "b" / "s.h5")
    msg = _one_error_line(_cli("render", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "v", *TURN))
    assert "in both" in msg and str(tmp_path / "a" / "s.h5") in msg and str(tmp_path / "b" / "s.h5") in msg
    assert not list((tmp_path / "v").rglob("*.png"))


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--samples", "0", "--samples must be >= 1"),
        ("--resolution", "100000", "--resolution must be in"),
        ("--distance", "0", "--distance must be"),
        ("--elevation", "nan", "--elevation must be"),
        ("--limit", "-1", "--limit must be >= 0"),
        ("--turntable", "0", "--turntable must be"),
    ],
)
def test_render_refuses_meaningless_options(nerfs, tmp_path, option, value, expected):
    args = [a for a in TURN]
    if option in args:
        i = args.index(option)
        del args[i : i + 2]
    msg = _one_error_line(_cli("render", nerfs, "--out", tmp_path / "v", *args, option, value))
    assert expected in msg
    assert not (tmp_path / "v").exists()


def test_render_checks_the_image_size_before_allocating(nerfs, tmp_path):
    msg = _one_error_line(_cli("render", nerfs, "--out", tmp_path / "v", "--turntable", "64", "--resolution", "16000",
                               "--no-progress", "--device", "cpu"))
    assert "GiB" in msg


# ----------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("command", ["fit-nerfs", "render", "synth"])
@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_an_unusable_output_folder_is_one_line(dataset, nerfs, tmp_path, command, kind):
    if kind == "unwritable" and os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    target = tmp_path / "out"
    if kind == "file":
        target.write_text("keep me")
    else:
        tmp_path.joinpath("ro").mkdir()
        os.chmod(tmp_path / "ro", 0o555)
        target = tmp_path / "ro" / "out"
    try:
        if command == "fit-nerfs":
            result = _cli("fit-nerfs", dataset, "--arch", "mlp", "--out", target, *QUICK)
        elif command == "render":
            result = _cli("render", nerfs, "--out", target, *TURN)
        else:
            result = _cli("synth", target, "--objects-per-class", "1", "--views", "2", "--resolution", "8",
                          "--classes", "chair", "--no-progress")
        msg = _one_error_line(result)
        assert str(target) in msg or str(target.parent) in msg
    finally:
        os.chmod(tmp_path / "ro", 0o755) if (tmp_path / "ro").exists() else None
    if kind == "file":
        assert target.read_text() == "keep me"


# ----------------------------------------------------------------------------- fit-nerfs options
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--limit", "-1"], "--limit must be >= 0"),
        (["--num-shards", "0", "--shard-index", "0"], "--num-shards must be >= 1"),
        (["--rays", "2000000000"], "rays=2000000000"),
    ],
)
def test_fit_nerfs_refuses_bad_counts(dataset, tmp_path, args, expected):
    msg = _one_error_line(_cli("fit-nerfs", dataset, "--arch", "mlp", "--out", tmp_path / "n", *QUICK, *args))
    assert expected in msg
    assert not list((tmp_path / "n").rglob("shard-*.h5"))


@pytest.mark.parametrize("value", ['"wide"', "2.5", "true"])
def test_an_architecture_file_with_a_non_integer_size_is_one_line(dataset, tmp_path, value):
    spec = tmp_path / "arch.json"
    spec.write_text(f'{{"name": "w", "family": "mlp", "freq_bands": 2, "hidden_dim": {value}}}')
    msg = _one_error_line(_cli("fit-nerfs", dataset, "--arch", spec, "--out", tmp_path / "n", *QUICK))
    assert str(spec) in msg and "hidden_dim" in msg and "integer" in msg


def test_build_graphs_on_a_folder_without_nerf_shards_fails(tmp_path):
    (tmp_path / "empty").mkdir()
    msg = _one_error_line(_cli("build-graphs", tmp_path / "empty", "--out", tmp_path / "g", "--no-progress"))
    assert "no NeRF shards" in msg


# ----------------------------------------------------------------------------- killed writes
_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from nfkit.io.artifacts import atomic_path
    with atomic_path(Path(sys.argv[1]), suffix=".h5.tmp") as tmp:
        tmp.write_bytes(b"partial")
        print("writing", flush=True)
        time.sleep(60)
    """
)


def _start_writer(target: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def _temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith("tmp"))


def test_sigterm_during_a_write_leaves_no_temp_file_and_a_rerun_completes(tmp_path):
    target = tmp_path / "shard.h5"
    proc = _start_writer(target)
    assert len(_temps(tmp_path)) == 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert _temps(tmp_path) == [] and not target.exists()
    from nfkit.io.artifacts import atomic_path

    with atomic_path(target) as tmp:
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done" and _temps(tmp_path) == []


def test_a_rerun_removes_temp_files_of_killed_runs_but_not_of_live_ones(tmp_path):
    from nfkit.io.artifacts import atomic_path

    killed = _start_writer(tmp_path / "a.h5")
    killed.send_signal(signal.SIGKILL)  # no cleanup possible
    killed.wait(timeout=20)
    (stale,) = _temps(tmp_path)
    live = _start_writer(tmp_path / "b.h5")  # a concurrent run, still writing
    try:
        live_temps = [p for p in _temps(tmp_path) if p != stale]
        assert len(live_temps) == 1
        with atomic_path(tmp_path / "c.h5") as tmp:
            tmp.write_bytes(b"ok")
        assert _temps(tmp_path) == live_temps  # the killed run's file is gone, the live one kept
    finally:
        live.kill()
        live.wait(timeout=20)
    time.sleep(0)


def test_sigterm_during_fit_nerfs_leaves_no_temp_file_and_a_rerun_completes(dataset, tmp_path):
    """A real fit-nerfs process killed while it writes a shard (h5py writing is slowed down so
    that the signal arrives inside the write)."""
    out = tmp_path / "nerfs"
    script = textwrap.dedent(
        f"""
        import sys, time, h5py
        from nfkit.nerf import store
        real = store.write_artifact
        import contextlib
        @contextlib.contextmanager
        def slow(*a, **k):
            with real(*a, **k) as f:
                yield f
                print("writing", flush=True)
                time.sleep(60)
        store.write_artifact = slow
        from nfkit.cli import main
        sys.argv = ["nfkit", "fit-nerfs", {str(dataset)!r}, "--arch", "mlp", "--out", {str(out)!r},
                    "--set", "batch_nerfs=1", "--workers", "1", *{QUICK!r}]
        main()
        """
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    assert proc.stdout.readline().strip() == "writing"
    assert len(_temps(out / "mlp")) == 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    assert _temps(out / "mlp") == [] and not list((out / "mlp").glob("shard-*.h5"))
    result = _cli("fit-nerfs", dataset, "--arch", "mlp", "--out", out, "--set", "batch_nerfs=1", *QUICK)
    assert result.exit_code == 0, result.output
    assert len(list((out / "mlp").glob("shard-*.h5"))) == 3 and _temps(out / "mlp") == []
