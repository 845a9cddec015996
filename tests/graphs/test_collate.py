"""The fast collation is pinned against torch_geometric's own Batch.from_data_list, and graph
vocabularies can grow without making older shards unreadable."""

from __future__ import annotations

import json

import h5py
import pytest
import torch
from torch_geometric.data import Batch

from nfkit.graphs.build import nerf_to_graph
from nfkit.graphs.collate import collate_graphs
from nfkit.graphs.schema import vocabulary, vocabulary_conflict
from nfkit.graphs.store import GraphShard, write_graph_shard
from nfkit.io.artifacts import ArtifactError, read_artifact

from .test_graph_roundtrip import random_params
from .test_graph_store import SMALL, _meta


@pytest.fixture
def shard(tmp_path):
    specs = [SMALL["mlp"], SMALL["tri"], SMALL["hash"], SMALL["mlp"]]
    graphs = [nerf_to_graph(s, random_params(s, seed=i)) for i, s in enumerate(specs)]
    path = write_graph_shard(tmp_path / "g.h5", graphs, [_meta(s, i) for i, s in enumerate(specs)], set(specs))
    return GraphShard(path)


def _assert_same_batch(ours: Batch, ref: Batch) -> None:
    assert set(ours.keys()) == set(ref.keys())
    for key in ref.keys():
        a, b = ours[key], ref[key]
        if torch.is_tensor(b):
            assert a.dtype == b.dtype and torch.equal(a, b), key
        else:
            assert a == b, key
    assert ours.num_graphs == ref.num_graphs
    for key, value in ref._slice_dict.items():
        assert torch.equal(torch.as_tensor(ours._slice_dict[key]), torch.as_tensor(value)), key
    for key, value in ref._inc_dict.items():
        mine = ours._inc_dict[key]
        if value is None or (torch.is_tensor(value) and value.dim() == 0 and not torch.is_tensor(mine)):
            assert mine is None or not torch.as_tensor(mine).any(), key
        else:
            assert torch.equal(torch.as_tensor(mine), torch.as_tensor(value)), key


def test_fast_collation_equals_batch_from_data_list(shard):
    data = [shard.data(i) for i in range(len(shard))]
    ref = Batch.from_data_list(data)
    for ours in (collate_graphs(data), shard.batch(range(len(shard)))):
        _assert_same_batch(ours, ref)
        back, expected = ours.to_data_list(), ref.to_data_list()
        assert len(back) == len(expected)
        for a, b in zip(back, expected, strict=True):
            assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index)
            assert torch.equal(a.edge_attr, b.edge_attr) and a.object_id == b.object_id
        assert torch.equal(ours.get_example(2).edge_index, ref.get_example(2).edge_index)


def test_subset_batches_match_too(shard):
    idx = [3, 1]
    ref = Batch.from_data_list([shard.data(i) for i in idx])
    _assert_same_batch(shard.batch(idx), ref)


def test_an_older_smaller_vocabulary_stays_readable(shard):
    current = vocabulary()
    older = json.loads(json.dumps(current))
    del older["node_types"]["hash_feature"], older["edge_types"]["hash"]
    assert vocabulary_conflict(older) is None
    newer = json.loads(json.dumps(current))
    newer["edge_types"]["sparse"] = 4
    assert "unknown 'sparse'" in vocabulary_conflict(newer)
    clash = json.loads(json.dumps(current))
    clash["node_types"]["bias"] = 7
    assert "'bias' is code 7, here 3" in vocabulary_conflict(clash)
    fewer_columns = json.loads(json.dumps(current))
    fewer_columns["edge_features"] = fewer_columns["edge_features"][:3]
    assert vocabulary_conflict(fewer_columns) is None

    with h5py.File(shard.path, "r+") as f:
        f.attrs["vocabulary"] = json.dumps(older)
    assert len(GraphShard(shard.path)) == 4
    with h5py.File(shard.path, "r+") as f:
        f.attrs["vocabulary"] = json.dumps(clash)
    with pytest.raises(ArtifactError, match="conflicts"):
        GraphShard(shard.path)


def test_registry_reads_graph_shards_by_kind_and_version(shard):
    again = read_artifact(shard.path, "graph-shard")
    assert isinstance(again, GraphShard) and len(again) == len(shard)
    with h5py.File(shard.path, "r+") as f:
        f.attrs["nfkit_schema_version"] = 99
    with pytest.raises(ArtifactError, match="schema v99 is not supported"):
        read_artifact(shard.path)
