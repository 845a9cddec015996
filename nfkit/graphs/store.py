"""Graph shards: the public names of the writer, reader, collation and dataset modules.

Kept so that ``from nfkit.graphs.store import ...`` keeps working; the code lives in
:mod:`nfkit.graphs.shard_writer`, :mod:`nfkit.graphs.shard_reader`,
:mod:`nfkit.graphs.collate` and :mod:`nfkit.graphs.dataset`.
"""

from __future__ import annotations

from nfkit.graphs.collate import collate_graphs, data_attrs, make_batch
from nfkit.graphs.dataset import GraphDataset
from nfkit.graphs.shard_reader import GraphShard, find_graph_shards
from nfkit.graphs.shard_writer import (
    GRAPH_SHARD,
    GRAPH_SHARD_VERSION,
    GraphMeta,
    GraphShardWriter,
    write_graph_shard,
)

__all__ = [
    "GRAPH_SHARD",
    "GRAPH_SHARD_VERSION",
    "GraphDataset",
    "GraphMeta",
    "GraphShard",
    "GraphShardWriter",
    "collate_graphs",
    "data_attrs",
    "find_graph_shards",
    "make_batch",
    "write_graph_shard",
]
