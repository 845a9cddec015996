"""Architecture specs (the registry is data) and NeRF shard artifacts."""

import json

import h5py
import numpy as np
import pytest

from nfkit.io.artifacts import ArtifactError
from nfkit.nerf.specs import REGISTRY, ArchSpec, get_arch
from nfkit.nerf.store import NerfRecord, find_shards, iter_nerfs, read_nerf_shard, write_nerf_shard


def test_registry_has_the_13_architectures_of_table_7():
    assert list(REGISTRY) == [
        "mlp", "tri", "hash", "mlp-2l", "mlp-32h", "tri-2l", "tri-32h", "tri-16w", "tri-8c",
        "hash-2l", "hash-32h", "hash-3n", "hash-11t",
    ]
    assert get_arch("MLP").encoding_dim == 144
    assert get_arch("tri").encoding_dim == 16 + 288
    assert get_arch("hash").encoding_dim == 8
    assert get_arch("tri-2l").mlp_shapes() == [(64, 304), (64, 64), (4, 64)]


def test_mlp_input_is_padded_to_tiny_cuda_nn_alignment():
    # tiny-cuda-nn pads the MLP input to a multiple of 16 (constant 1): the canonical mlp.0 keeps it
    widths = {name: (spec.encoding_dim, spec.mlp_input_dim) for name, spec in REGISTRY.items()}
    assert widths == {
        "mlp": (144, 144), "tri": (304, 304), "hash": (8, 16), "mlp-2l": (144, 144),
        "mlp-32h": (144, 144), "tri-2l": (304, 304), "tri-32h": (304, 304), "tri-16w": (304, 304),
        "tri-8c": (296, 304), "hash-2l": (8, 16), "hash-32h": (8, 16), "hash-3n": (6, 16),
        "hash-11t": (8, 16),
    }
    assert get_arch("hash").mlp_shapes() == [(64, 16), (64, 64), (64, 64), (4, 64)]
    assert get_arch("hash-32h").mlp_shapes()[0] == (32, 16)
    assert get_arch("tri-8c").param_shapes()["mlp.0"] == (64, 304)
    assert get_arch("hash").n_input_padding == 8 and get_arch("mlp").n_input_padding == 0
    assert get_arch("hash").n_params() == 4 * 4096 * 2 + 64 * 16 + 2 * 64 * 64 + 4 * 64
    assert ArchSpec("wide", "mlp", freq_bands=3).mlp_input_dim == 32  # 18 -> 32
    assert ArchSpec("exact", "hash", hash_levels=8).mlp_input_dim == 16  # no padding at 16


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("hash_log2_size", 2, "hash_log2_size must be >= 3"),
        ("tri_res", 1, "tri_res must be >= 2"),
        ("hash_features", 3, "hash_features must be one of"),
        ("freq_bands", -1, "freq_bands must be >= 0"),
        ("hash_levels", 0, "hash_levels must be >= 1"),
        ("hash_base_res", 0, "hash_base_res must be >= 1"),
        ("hash_per_level_scale", 0.5, "hash_per_level_scale must be >= 1"),
        ("hash_per_level_scale", float("nan"), "hash_per_level_scale must be >= 1"),
        ("tri_channels", 0, "tri_channels must be >= 1"),
    ],
)
def test_invalid_hyper_parameters_are_refused(field, value, message):
    family = "tri" if field.startswith("tri") or field == "freq_bands" else "hash"
    with pytest.raises(ValueError, match=message) as err:
        ArchSpec("bad", family, **{field: value})
    assert "\n" not in str(err.value)
    ArchSpec("ok", family, **{field: {"hash_log2_size": 3, "tri_res": 2, "hash_features": 8}.get(field, 1)})


def test_hash_levels_follow_tcnn_formulas():
    spec = get_arch("hash")
    assert spec.hash_level_resolutions() == [16, 32, 64, 128]
    # level 0 is dense (16^3 = 4096 = T), the others hashed into T entries
    assert spec.hash_level_sizes() == [4096, 4096, 4096, 4096]
    assert spec.param_shapes()["hash_table"] == (4 * 4096 * 2,)
    small = get_arch("hash-11t")
    assert small.hash_level_sizes() == [2048] * 4
    odd = ArchSpec("odd", "hash", hash_base_res=5, hash_levels=1)
    # res = ceil(5 - 1) + 1 = 5; 125 entries rounded up to a multiple of 8
    assert odd.hash_level_sizes() == [128]
    # float32, as tiny-cuda-nn: exp2f(3·log2f(1.5))·16 − 1 is exactly 53 (float64 gives
    # 53.00000000000001, whose ceil would make the level 55 wide instead of 54)
    f32 = ArchSpec("f32", "hash", hash_per_level_scale=1.5)
    assert f32.hash_level_scales() == [15.0, 23.0, 35.0, 53.0]
    assert f32.hash_level_resolutions() == [16, 24, 36, 54]


def test_user_spec_from_json_and_errors(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "family": "tri", "tri_res": 8, "freq_bands": 2}))
    spec = get_arch(str(path))
    assert spec.param_shapes()["triplane"] == (3, 16, 8, 8)
    assert spec.fingerprint() != get_arch("tri").fingerprint()
    with pytest.raises(ValueError, match="unknown architecture 'nope'"):
        get_arch("nope")
    path.write_text(json.dumps({"name": "x", "family": "voxel"}))
    with pytest.raises(ValueError, match="unknown architecture family"):
        get_arch(str(path))
    path.write_text(json.dumps({"name": "x", "family": "mlp", "bogus": 1}))
    with pytest.raises(ValueError, match="bogus"):
        get_arch(str(path))


def _records(spec, n, seed=0):
    rng = np.random.default_rng(seed)
    return [
        NerfRecord(
            object_id=f"obj{i}", class_name="chair", split="train", arch=spec,
            init_fingerprint="f" * 16,
            params={k: rng.standard_normal(s).astype(np.float32) for k, s in spec.param_shapes().items()},
            psnr=30.0 + i, fit_seconds=1.5,
        )
        for i in range(n)
    ]


def test_nerf_shard_round_trip(tmp_path):
    spec = get_arch("tri-16w")
    recs = _records(spec, 3)
    write_nerf_shard(tmp_path / "tri" / "shard-0.h5", recs, config={"steps": 5})
    back = read_nerf_shard(tmp_path / "tri" / "shard-0.h5")
    assert [r.key for r in back] == ["chair/obj0", "chair/obj1", "chair/obj2"]
    assert back[1].arch == spec and back[1].psnr == pytest.approx(31.0)
    for a, b in zip(recs, back, strict=True):
        for k in spec.param_shapes():
            np.testing.assert_array_equal(a.params[k], b.params[k])
    meta_only = list(iter_nerfs(tmp_path, load_params=False))
    assert len(meta_only) == 3 and meta_only[0].params == {}
    assert find_shards(tmp_path) == [tmp_path / "tri" / "shard-0.h5"]


def test_nerf_shard_refuses_mixed_and_wrong_shapes(tmp_path):
    a = _records(get_arch("mlp"), 1)
    b = _records(get_arch("mlp-2l"), 1)
    with pytest.raises(ValueError, match="one architecture"):
        write_nerf_shard(tmp_path / "x.h5", a + b)
    bad = _records(get_arch("mlp"), 1)
    bad[0].params["mlp.0"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="mlp.0"):
        write_nerf_shard(tmp_path / "x.h5", bad)
    assert not (tmp_path / "x.h5").exists()


def test_corrupt_nerf_shard_is_refused(tmp_path):
    path = tmp_path / "s.h5"
    write_nerf_shard(path, _records(get_arch("mlp"), 2))
    with h5py.File(path, "r+") as f:
        del f["params/mlp.1"]
        f["params/mlp.1"] = np.zeros((2, 5, 5), np.float32)
    with pytest.raises(ArtifactError, match="mlp.1"):
        read_nerf_shard(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError):
        read_nerf_shard(path)
