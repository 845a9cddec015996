"""Graph shards: write, memory-mapped read, exact inverse, fast batches equal to PyG's collate."""

import json

import h5py
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from nfkit.graphs.build import nerf_to_graph
from nfkit.graphs.store import (
    GraphDataset,
    GraphMeta,
    GraphShard,
    GraphShardWriter,
    collate_graphs,
    write_graph_shard,
)
from nfkit.io.artifacts import ArtifactError
from nfkit.nerf.specs import REGISTRY, ArchSpec

from .test_graph_roundtrip import assert_same_params, random_params

SMALL = {
    "mlp": ArchSpec("s-mlp", "mlp", hidden_layers=2, hidden_dim=8, freq_bands=2),
    "tri": ArchSpec(
        "s-tri", "tri", hidden_layers=2, hidden_dim=8, freq_bands=1, tri_res=4, tri_channels=3
    ),
    "hash": ArchSpec(
        "s-hash",
        "hash",
        hidden_layers=2,
        hidden_dim=8,
        hash_levels=2,
        hash_log2_size=6,
        hash_base_res=2,
    ),
}


def _meta(spec, i):
    return GraphMeta(
        f"obj{i}",
        "chair" if i % 2 else "lamp",
        "train",
        spec.name,
        spec.fingerprint(),
        "i" * 16,
        "src.h5",
        i,
    )


@pytest.fixture
def mixed_shard(tmp_path):
    specs, graphs, metas, params = [], [], [], []
    for i, spec in enumerate([SMALL["mlp"], SMALL["tri"], SMALL["hash"], SMALL["tri"]]):
        p = random_params(spec, seed=i)
        specs.append(spec)
        params.append(p)
        graphs.append(nerf_to_graph(spec, p))
        metas.append(_meta(spec, i))
    path = write_graph_shard(tmp_path / "g.h5", graphs, metas, set(specs))
    return path, graphs, metas, params


def test_shard_round_trip_memory_mapped(mixed_shard):
    path, graphs, metas, params = mixed_shard
    shard = GraphShard(path)
    assert len(shard) == 4 and shard.meta == metas
    assert isinstance(shard.edge_attr, np.memmap) and isinstance(shard.x, np.memmap)
    for i, g in enumerate(graphs):
        back = shard.graph(i)
        np.testing.assert_array_equal(back.x, g.x)
        np.testing.assert_array_equal(back.edge_index, g.edge_index)
        assert back.edge_attr.tobytes() == g.edge_attr.tobytes()
        assert_same_params(shard.params(i), params[i])
    with h5py.File(path) as f:
        assert f["edge_index"].dtype == np.int32 and f["x"].dtype == np.int32
        assert f["edge_attr"].dtype == np.float32 and f["edge_attr"].shape[1] == 6
        assert json.loads(f.attrs["vocabulary"])["edge_types"]["hash"] == 3
        np.testing.assert_array_equal(np.diff(f["node_ptr"][()]), [g.num_nodes for g in graphs])


def _assert_batches_equal(a, b):
    assert a.num_graphs == b.num_graphs
    for key in ("x", "edge_index", "edge_attr", "batch", "ptr", "source_row"):
        assert torch.equal(a[key], b[key]), key
    for key in ("object_id", "class_name", "split", "arch", "source_shard"):
        assert a[key] == b[key], key


def test_batches_equal_pyg_collate_and_split_back(mixed_shard):
    path, graphs, metas, _ = mixed_shard
    shard = GraphShard(path)
    order = [2, 0, 3]
    data = [shard.data(i) for i in order]
    reference = Batch.from_data_list(data)
    fast = collate_graphs(data)
    direct = shard.batch(order)
    _assert_batches_equal(fast, reference)
    _assert_batches_equal(direct, reference)
    for batch in (fast, direct):
        for d, back in zip(data, batch.to_data_list(), strict=True):
            assert torch.equal(d.x, back.x) and torch.equal(d.edge_index, back.edge_index)
            assert torch.equal(d.edge_attr, back.edge_attr)
            assert back.object_id == d.object_id and int(back.source_row) == int(d.source_row)
    assert direct.get_example(1).object_id == metas[0].object_id


def test_dataset_and_loader(mixed_shard, tmp_path):
    path, graphs, _, _ = mixed_shard
    ds = GraphDataset(tmp_path, archs=["s-tri"])
    assert len(ds) == 2 and ds.meta(1).object_id == "obj3"
    assert torch.equal(ds[0].edge_attr, torch.from_numpy(graphs[1].edge_attr))
    batches = list(ds.loader(batch_size=2))
    assert len(batches) == 1 and batches[0].num_graphs == 2
    assert batches[0].x.dtype == torch.long and batches[0].edge_index.dtype == torch.long


def test_incomplete_writes_leave_no_file(tmp_path):
    spec = SMALL["mlp"]
    g = nerf_to_graph(spec, random_params(spec))
    with pytest.raises(ValueError, match="announced"):
        with GraphShardWriter(tmp_path / "x.h5", 2, 2 * g.num_nodes, 2 * g.num_edges, [spec]) as w:
            w.add(g, _meta(spec, 0))
    with pytest.raises(RuntimeError):
        with GraphShardWriter(tmp_path / "x.h5", 1, g.num_nodes, g.num_edges, [spec]) as w:
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_reader_rejects_foreign_or_damaged_files(mixed_shard, tmp_path):
    path, *_ = mixed_shard
    with h5py.File(path, "r+") as f:
        vocab = json.loads(f.attrs["vocabulary"])
        vocab["edge_types"]["hash"] = 9
        f.attrs["vocabulary"] = json.dumps(vocab)
    with pytest.raises(ArtifactError, match="vocabulary"):
        GraphShard(path)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ArtifactError, match="corrupt"):
        GraphShard(cut)


def test_paper_size_graph_survives_a_shard(tmp_path):
    spec = REGISTRY["hash"]
    params = random_params(spec)
    path = write_graph_shard(
        tmp_path / "h.h5", [nerf_to_graph(spec, params)], [_meta(spec, 0)], [spec]
    )
    assert_same_params(GraphShard(path).params(0), params)


def test_dataset_keeps_a_bounded_number_of_shards_mapped(tmp_path):
    spec = SMALL["hash"]
    graphs = []
    for s in range(3):
        g = nerf_to_graph(spec, random_params(spec, seed=s))
        graphs.append(g)
        write_graph_shard(tmp_path / f"s{s}.h5", [g], [_meta(spec, s)], [spec])
    ds = GraphDataset(tmp_path, max_open=2)
    for k in (0, 1, 2, 0):
        assert torch.equal(ds[k].edge_attr, torch.from_numpy(graphs[k].edge_attr))
        assert sum(shard._maps is not None for shard in ds.shards) <= 2
    assert ds.shards[1]._maps is None  # least recently used
