"""The single-process side of scale-out: shard plans, torchrun's environment, the backends, the
decoder's batch statistics, the step generators and the folder comparison (no processes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nfkit.distributed import (
    Dist,
    average_gradients,
    device_for_rank,
    gather_rows,
    init_distributed,
    resolve_backend,
    split_bounds,
)
from nfkit.encoder.train import StepRandom
from nfkit.errors import ConfigError, UserError
from nfkit.eval.same_artifacts import compare_folders
from nfkit.io.launch import launch_from_env, shows_progress
from nfkit.io.shards import plan_work, shard_selection
from nfkit.models.decoder import DecoderSpec, ImplicitDecoder


def test_shard_groups_give_every_shard_whole_batches():
    # 11 items in batches of 4: batches [0-3], [4-7], [8-10]; two shards take batches 0, 2 and 1
    assert shard_selection(11, 0, 2, group=4) == [0, 1, 2, 3, 8, 9, 10]
    assert shard_selection(11, 1, 2, group=4) == [4, 5, 6, 7]
    items = [f"o{i}" for i in range(11)]
    single = list(plan_work(items, batch_size=4).batches())
    sharded = [b for k in range(3) for b in plan_work(items, shard_index=k, num_shards=3, batch_size=4, shard_group=4).batches()]
    assert sorted(map(tuple, sharded)) == sorted(map(tuple, single))  # the same batches
    # sharding comes before skipping: a shard's items do not depend on what is done already
    assert plan_work(items, done={"o0", "o4"}, shard_index=1, num_shards=2, shard_group=4).selected == items[4:8]
    plan = plan_work(items, shard_index=1, num_shards=2)
    assert plan.label == "[shard 2/2]" and plan_work(items).label == ""
    with pytest.raises(ConfigError, match="group"):
        shard_selection(3, 0, 1, group=0)


def test_torchrun_environment():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    launch = launch_from_env(env)
    assert (launch.rank, launch.world, launch.local_rank, launch.local_world) == (3, 4, 1, 2)
    assert launch.label == "[rank 3/4]" and launch_from_env({}).label == ""
    assert not shows_progress(env) and shows_progress({**env, "LOCAL_RANK": "0"}) and shows_progress({})
    with pytest.raises(ConfigError, match="outside"):
        launch_from_env({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="not integers"):
        launch_from_env({"RANK": "a", "WORLD_SIZE": "2"})
    assert device_for_rank("cpu", env) == "cpu"


def test_backends_and_single_process_collectives():
    assert resolve_backend("auto", "cpu") == "gloo" and resolve_backend("auto", "cuda:1") == "nccl"
    assert resolve_backend("GLOO", "cuda") == "gloo"
    with pytest.raises(UserError, match="nccl needs CUDA"):
        resolve_backend("nccl", "cpu")
    with pytest.raises(ConfigError, match="expected one of"):
        resolve_backend("mpi", "cpu")
    d = init_distributed("auto", "cpu", env={})
    assert d == Dist() and not d.enabled and d.main
    x = torch.ones(3, 2)
    assert gather_rows(d, x, [3]) is x
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.ones(2)
    assert average_gradients(d, [p], [1.5, 2.0]) == [1.5, 2.0] and p.grad.tolist() == [1.0, 1.0]
    assert split_bounds(5, 2) == [(0, 3), (3, 5)] and split_bounds(2, 3) == [(0, 1), (1, 2), (2, 2)]
    assert split_bounds(0, 2) == [(0, 0), (0, 0)]


def test_decoder_batch_stats_equal_a_batchnorm_on_the_whole_batch():
    """What a data-parallel rank does with its part of the batch (the statistics of the whole,
    gathered batch) equals the BatchNorm of one process on the whole batch: outputs, gradients
    and running statistics."""
    torch.manual_seed(0)
    a = ImplicitDecoder(DecoderSpec(8, 16, 2, normalize_embedding=True))
    b = ImplicitDecoder(DecoderSpec(8, 16, 2, normalize_embedding=True))
    b.load_state_dict(a.state_dict())
    emb = torch.randn(6, 8, dtype=torch.float64).float().requires_grad_(True)
    x = torch.rand(6, 5, 3)
    rgb, sigma = a(emb, x)
    (rgb.sum() + sigma.sum()).backward()
    grad_a, emb.grad = emb.grad.clone(), None
    with b.batch_stats_from(emb):  # two "ranks": rows 0-3 and 4-5, each decoded alone
        parts = [b(emb[lo:hi], x[lo:hi]) for lo, hi in ((0, 4), (4, 6))]
    rgb_b = torch.cat([p[0] for p in parts])
    sigma_b = torch.cat([p[1] for p in parts])
    (rgb_b.sum() + sigma_b.sum()).backward()
    torch.testing.assert_close(rgb_b, rgb)
    torch.testing.assert_close(emb.grad, grad_a)
    # one running-statistics update per call, as a BatchNorm called twice on the batch
    ref = ImplicitDecoder(DecoderSpec(8, 16, 2, normalize_embedding=True))
    ref.load_state_dict(a.state_dict())
    ref.embed_norm.reset_running_stats()
    b.embed_norm.reset_running_stats()
    ref(emb, x)
    ref(emb, x)
    with b.batch_stats_from(emb):
        b(emb[:4], x[:4])
        b(emb[4:], x[4:])
    torch.testing.assert_close(b.embed_norm.running_mean, ref.embed_norm.running_mean)
    torch.testing.assert_close(b.embed_norm.running_var, ref.embed_norm.running_var)
    assert int(b.embed_norm.num_batches_tracked) == 2
    assert b._batch_stats is None  # restored after the block


def test_step_generators_depend_on_the_graph_not_on_the_batch():
    r = StepRandom(0, 1, 2)
    assert torch.equal(torch.rand(4, generator=r.item(3)), torch.rand(4, generator=StepRandom(0, 1, 2).item(3)))
    assert not torch.equal(torch.rand(4, generator=r.item(3)), torch.rand(4, generator=r.item(4)))
    assert not torch.equal(torch.rand(4, generator=r.edges("mlp")), torch.rand(4, generator=r.edges("tri")))
    assert not torch.equal(torch.rand(4, generator=r.item(0)), torch.rand(4, generator=StepRandom(0, 1, 3).item(0)))


def test_same_artifacts_compares_content_not_timestamps(tmp_path):
    import h5py

    for name, value in (("a", 1.0), ("b", 1.0), ("c", 2.0)):
        (tmp_path / name).mkdir()
        with h5py.File(tmp_path / name / "s.h5", "w") as f:
            f.attrs["nfkit_created"] = name  # differs, ignored
            f.create_dataset("x", data=np.array([value, 3.0]))
            f.create_dataset("meta/fit_seconds", data=np.array([float(ord(name))]))  # ignored
    assert compare_folders(tmp_path / "a", tmp_path / "b") == []
    assert compare_folders(tmp_path / "a", tmp_path / "c") == ["s.h5 x: values differ"]
    assert compare_folders(tmp_path / "a", tmp_path / "c", atol=1.5) == []
    (tmp_path / "b" / "extra.json").write_text("{}")
    assert compare_folders(tmp_path / "a", tmp_path / "b") == [f"extra.json: only in {tmp_path / 'b'}"]


def test_build_graphs_shards_split_the_inputs_once(tmp_path):
    from nfkit.graphs.convert import build_graphs
    from tests.encoder.conftest import make_nerfs

    make_nerfs(tmp_path / "nerfs")  # one NeRF shard per architecture
    (tmp_path / "nerfs" / "broken.h5").write_bytes(b"not hdf5")
    runs = [list(build_graphs([tmp_path / "nerfs"], tmp_path / "graphs", archs=["mlp-32h", "tri-16w"],
                              shard_index=i, num_shards=2)) for i in range(2)]
    status = [sorted((r.status, r.arch) for r in run) for run in runs]
    built = [a for run in status for s, a in run if s == "built"]
    assert sorted(built) == ["mlp-32h", "tri-16w"]  # each kept input built by one shard
    assert sum(s == "filtered" for run in status for s, _ in run) == 1 and any(s == "filtered" for s, _ in status[0])
    failed = [r for run in runs for r in run if r.status == "failed"]
    assert len(failed) == 1 and "broken.h5" in failed[0].message  # an unreadable input: reported once
