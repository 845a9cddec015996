"""``nfkit import-nerfs``: fake reference-layout files (nf2vec / gmnerf) -> NeRF shards."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.nerf import field, interop
from nfkit.nerf import init as nerf_init
from nfkit.nerf.encodings import frequency_encoding, hash_grid_encoding
from nfkit.nerf.specs import get_arch
from nfkit.nerf.store import iter_nerfs, read_shard_spec
from tests.precision import assert_float32_close, rounding_steps

runner = CliRunner()
OBJECTS = [("02691156", "a1"), ("02691156", "a2"), ("03001627", "c1"), ("03001627", "c2"), ("04379243", "t1")]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_params(spec, seed):
    p = field.init_params(spec, torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(1000 + seed)
    return {k: (v + 0.1 * torch.randn(v.shape, generator=g)).numpy() for k, v in p.items()}


def _write_reference_tree(tmp_path, spec, arch_folder, seeds):
    """gmnerf layout: <data>/nerf/shapenet/<arch>/<class>/<id>/nerf_weights.pth + split lists."""
    root = tmp_path / "nerf" / "shapenet" / arch_folder
    truth = {}
    for (cls, obj), seed in zip(OBJECTS[: len(seeds)], seeds, strict=True):
        params = _random_params(spec, seed)
        folder = root / cls / obj
        folder.mkdir(parents=True)
        torch.save(interop.canonical_to_reference(spec, params), folder / "nerf_weights.pth")
        torch.save({"_binary": torch.zeros(2)}, folder / "grid.pth")  # occupancy grid, ignored
        truth[obj] = params
    base = root.parent
    (base / "train.txt").write_text("02691156/a1\n02691156/a2\n03001627/c1\n")
    (base / "val.txt").write_text("03001627/c2\n")
    return root, truth


def _reference_layer_shapes(spec, n_inputs):
    """tcnn.Network(n_input_dims=n_inputs, 4): (out, in) of its weight matrices, input padded
    to a multiple of 16, output 4 -> 16 (written out here, independently of nfkit)."""
    h = spec.hidden_dim
    return [(h, -(-n_inputs // 16) * 16)] + [(h, h)] * (spec.hidden_layers - 1) + [(16, h)]


def _reference_forward(spec, state, x):
    """The authors' field (gmnerf nf2vec/nerf/*.py) on a reference state dict, in torch:
    [frequency ‖ tri-plane] input, tri-plane stored (3, R, R, C), and tcnn.Network's Identity
    encoding appending constant-1 padding inputs after the whole input.

    The float64 reference of nfkit's float32 field: positions and the frequency encoding stay
    float32 (its top bands depend on how ``u`` rounds), everything after them is float64."""
    lo, hi = field.AABB
    u = (x - lo) / (hi - lo)
    flat = state["mlp_base.params"].double()
    if spec.family == "tri":
        scaled = (2 * (x - lo) / (hi - lo) - 1).double()
        xy, xz, zy = scaled[:, [0, 1]], scaled[:, [0, 2]], scaled[:, [1, 2]]
        grid = torch.stack([xy, xz, zy], dim=0).unsqueeze(1)
        feats = torch.nn.functional.grid_sample(state["triplane"].double().permute(0, 3, 1, 2), grid, align_corners=True)
        feats = feats.squeeze(2).permute(0, 2, 1).sum(0)
        enc = torch.cat([frequency_encoding(u, spec.freq_bands).double(), feats], dim=1)
    elif spec.family == "hash":
        enc = hash_grid_encoding(spec, state["encoding.params"][None].double(), u[None])[0]
    else:
        enc = frequency_encoding(u, spec.freq_bands).double()
    shapes = _reference_layer_shapes(spec, enc.shape[1])
    h = torch.cat([enc, torch.ones(len(x), shapes[0][1] - enc.shape[1], dtype=torch.float64)], dim=1)  # tcnn pads with 1
    start = 0
    act = torch.relu if spec.activation == "relu" else torch.sin
    for i, (o, n) in enumerate(shapes):
        w = flat[start : start + o * n].reshape(o, n)
        start += o * n
        h = h @ w.T
        if i < len(shapes) - 1:
            h = act(h)
    inside = ((u > 0) & (u < 1)).all(-1)
    return torch.sigmoid(h[:, :3]), torch.exp(h[:, 3] - 1) * inside


@pytest.mark.parametrize("name", ["mlp", "tri", "hash", "tri-8c", "hash-3n"])
def test_reference_conversion_roundtrip_and_same_function(name):
    spec = get_arch(name)
    params = _random_params(spec, 0)
    assert np.abs(params["mlp.0"][:, spec.encoding_dim :]).min(initial=1.0) > 0  # nonzero padding weights
    state = interop.canonical_to_reference(spec, params)
    if spec.family == "tri":
        assert tuple(state["triplane"].shape) == (3, 32, 32, spec.tri_channels)
    assert state["mlp_base.params"].numel() == sum(o * n for o, n in _reference_layer_shapes(spec, spec.encoding_dim))
    back = interop.reference_to_canonical(spec, state)
    assert all(np.array_equal(back[k], params[k]) for k in spec.param_shapes())  # exact, padding included
    prefixed = interop.reference_to_canonical(spec, {f"radiance_field.{k}": v.half() for k, v in state.items()})
    assert all(np.allclose(prefixed[k], params[k], atol=1e-2) for k in spec.param_shapes())  # fp16 files load too
    x = torch.rand(300, 3, generator=_gen()) * 1.3 - 0.65
    rgb, sigma = field.forward(spec, {k: torch.tensor(v)[None] for k, v in back.items()}, x[None])
    ref_rgb, ref_sigma = _reference_forward(spec, state, x)
    assert_float32_close(rgb[0], ref_rgb, rounding_steps(spec, 1), "rgb")
    assert_float32_close(sigma[0], ref_sigma, rounding_steps(spec, 1), "sigma")


def test_import_nerfs_cli_roundtrip_exact(tmp_path):
    spec = get_arch("tri")
    root, truth = _write_reference_tree(tmp_path, spec, "triplane", seeds=range(5))
    out = tmp_path / "shards"
    result = runner.invoke(app, ["import-nerfs", str(root), "--arch", "tri", "--out", str(out), "--shard-size", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "imported 5 of 5" in result.output and "imported:unknown" in result.output
    assert len(list(out.glob("tri-imported-*.h5"))) == 3
    records = {r.object_id: r for r in iter_nerfs(out)}
    assert set(records) == set(truth)
    for obj, params in truth.items():
        r = records[obj]
        assert all(np.array_equal(r.params[k], params[k]) for k in spec.param_shapes())
        assert r.init_fingerprint == interop.UNKNOWN_INIT and math.isnan(r.psnr) and r.arch == spec
        assert r.source.endswith(f"{obj}/nerf_weights.pth")
    assert records["a1"].class_name == "airplane" and records["c2"].class_name == "chair"
    assert [records[o].split for o in ("a1", "c1", "c2", "t1")] == ["train", "train", "val", "unlisted"]
    again = runner.invoke(app, ["import-nerfs", str(root), "--arch", "tri", "--out", str(out), "--shard-size", "2", "--no-progress"])
    assert again.exit_code == 0 and "5 already imported" in again.output
    # resume is by source file, not by chunk position: another --shard-size re-imports nothing
    changed = runner.invoke(app, ["import-nerfs", str(root), "--arch", "tri", "--out", str(out), "--shard-size", "3", "--no-progress"])
    assert changed.exit_code == 0 and "imported 0 of 5" in changed.output and "5 already imported" in changed.output
    assert len(list(out.glob("tri-imported-*.h5"))) == 3


def test_import_reports_bad_files_and_imports_the_rest(tmp_path):
    spec = get_arch("mlp")
    root, truth = _write_reference_tree(tmp_path, spec, "mlp", seeds=range(5))
    wrong = interop.canonical_to_reference(get_arch("mlp-32h"), _random_params(get_arch("mlp-32h"), 9))
    torch.save(wrong, root / "03001627" / "c1" / "nerf_weights.pth")
    (root / "04379243" / "t1" / "nerf_weights.pth").write_bytes(b"not a torch file")
    out = tmp_path / "shards"
    result = runner.invoke(app, ["import-nerfs", str(root), "--arch", "mlp", "--out", str(out), "--no-progress"])
    assert result.exit_code == 1
    err_lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert any("c1/nerf_weights.pth: mlp_base.params has 7168 values, architecture 'mlp' expects 18432" in ln for ln in err_lines)
    assert any("t1/nerf_weights.pth: not a readable torch weights file" in ln for ln in err_lines)
    assert "2 of 5 files could not be imported" in result.output
    assert {r.object_id for r in iter_nerfs(out)} == {"a1", "a2", "c2"}


def test_import_with_init_records_its_fingerprint_and_refuses_another_arch(tmp_path):
    spec = get_arch("hash")
    root, _ = _write_reference_tree(tmp_path, spec, "hash", seeds=range(2))
    init = nerf_init.get_or_create_init(spec, tmp_path / "inits")
    out = tmp_path / "shards"
    result = runner.invoke(app, ["import-nerfs", str(root), "--arch", "hash", "--out", str(out), "--init", str(init.path), "--no-progress"])
    assert result.exit_code == 0, result.output
    (shard,) = out.glob("*.h5")
    assert read_shard_spec(shard)[1] == init.fingerprint
    unknown = runner.invoke(app, ["import-nerfs", str(root), "--arch", "hash", "--out", str(out), "--no-progress"])
    assert unknown.exit_code == 1 and f"holds NeRFs of init {init.fingerprint}, not imported:unknown" in unknown.output
    other = nerf_init.get_or_create_init(get_arch("hash-11t"), tmp_path / "inits")
    bad = runner.invoke(app, ["import-nerfs", str(root), "--arch", "hash", "--out", str(tmp_path / "o2"), "--init", str(other.path)])
    assert bad.exit_code == 1 and "was made for architecture hash-11t" in bad.output
    # a reference-layout init file is converted and saved beside the shards
    ref_init = tmp_path / "init_weights.pth"
    torch.save(interop.canonical_to_reference(spec, init.params), ref_init)
    ok = runner.invoke(app, ["import-nerfs", str(root), "--arch", "hash", "--out", str(tmp_path / "o3"), "--init", str(ref_init), "--no-progress"])
    assert ok.exit_code == 0 and init.fingerprint in ok.output
    assert nerf_init.load_init(tmp_path / "o3" / "hash.init.h5").fingerprint == init.fingerprint


@pytest.mark.parametrize("name", ["hash", "tri-8c"])
def test_imported_nerf_with_trained_padding_weights_is_the_reference_function(tmp_path, name):
    """A reference file written directly in tcnn's layout (not through nfkit's converter), with
    large weights on tcnn's constant-1 padding inputs, as tiny-cuda-nn trains them."""
    spec = get_arch(name)
    g = _gen(3)
    shapes = _reference_layer_shapes(spec, spec.encoding_dim)
    flat = torch.cat([torch.randn(o * n, generator=g) * (2.0 / n) ** 0.5 for o, n in shapes])
    w0 = flat[: shapes[0][0] * shapes[0][1]].view(shapes[0])
    w0[:, spec.encoding_dim :] = 0.25 + 0.5 * torch.rand(shapes[0][0], spec.n_input_padding, generator=g)
    state = {"mlp_base.params": flat}
    if spec.family == "hash":
        state["encoding.params"] = torch.randn(spec.param_shapes()["hash_table"], generator=g) * 0.5
    else:
        state["triplane"] = torch.randn(3, spec.tri_res, spec.tri_res, spec.tri_channels, generator=g) * 0.5
    folder = tmp_path / "ref" / "02691156" / "a1"
    folder.mkdir(parents=True)
    torch.save(state, folder / "nerf_weights.pth")
    result = runner.invoke(app, ["import-nerfs", str(tmp_path / "ref"), "--arch", name, "--out", str(tmp_path / "s"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    (record,) = iter_nerfs(tmp_path / "s")
    # exact: the padding columns are stored, after the encoding's columns
    np.testing.assert_array_equal(record.params["mlp.0"][:, spec.encoding_dim :], w0[:, spec.encoding_dim :].numpy())
    x = torch.rand(400, 3, generator=_gen(4)) * 1.3 - 0.65
    rgb, sigma = field.forward(spec, {k: torch.tensor(v)[None] for k, v in record.params.items()}, x[None])
    ref_rgb, ref_sigma = _reference_forward(spec, state, x)
    assert_float32_close(rgb[0], ref_rgb, rounding_steps(spec, 1), "rgb")
    assert_float32_close(sigma[0], ref_sigma, rounding_steps(spec, 1), "sigma")
    # the padding weights matter: without them (the old, lossy import) it is another function
    dropped = {k: torch.tensor(v)[None] for k, v in record.params.items()}
    dropped["mlp.0"][..., spec.encoding_dim :] = 0.0
    assert not torch.allclose(field.forward(spec, dropped, x[None])[0][0].double(), ref_rgb, atol=1e-3)


def test_nf2vec_json_split_lists(tmp_path):
    spec = get_arch("mlp")
    root, _ = _write_reference_tree(tmp_path, spec, "mlp", seeds=range(5))
    splits = tmp_path / "nf2vec_data"
    splits.mkdir()
    (splits / "test.json").write_text(json.dumps(["./data/data_TRAINED/04379243/t1"]))
    (splits / "validation.json").write_text(json.dumps(["./data/data_TRAINED/02691156/a2"]))
    refs = interop.find_reference_nerfs(root, splits_dir=splits)
    assert {r.object_id: r.split for r in refs} == {"a1": "unlisted", "a2": "val", "c1": "unlisted", "c2": "unlisted", "t1": "test"}
    with pytest.raises(FileNotFoundError, match="no nerf_weights.pth"):
        interop.import_reference_nerfs(splits, spec, tmp_path / "x")
