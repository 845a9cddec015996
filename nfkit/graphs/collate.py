"""Collation of parameter graphs into ``torch_geometric.data.Batch`` without ``from_data_list``.

:func:`make_batch` fills a Batch's private bookkeeping (``_slice_dict``, ``_inc_dict``,
``_num_graphs``) as ``Batch.from_data_list`` does, so that ``to_data_list``/``get_example``
work; ``tests/graphs/test_collate.py`` pins this against ``Batch.from_data_list`` for the
installed torch_geometric, so a change of those private attributes fails a test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields

import numpy as np

from nfkit.graphs.shard_writer import GraphMeta


def data_attrs(meta: GraphMeta) -> dict:
    """The metadata a ``Data`` graph carries (fingerprints left out)."""
    d = asdict(meta)
    d.pop("arch_fingerprint")
    d.pop("init_fingerprint")
    return d


def make_batch(x, edge_index, edge_attr, node_counts, edge_counts, attrs: list[dict]):
    """Assemble a Batch from already concatenated (and offset) numpy arrays, as
    ``Batch.from_data_list`` would (``to_data_list`` and ``get_example`` work on it)."""
    import torch
    from torch_geometric.data import Batch

    n = len(attrs)
    zeros = torch.zeros(n, dtype=torch.long)
    node_ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(node_counts)]).astype(np.int64))
    edge_ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(edge_counts)]).astype(np.int64))
    lists = {k: [a[k] for a in attrs] for k in attrs[0]}
    source_row = torch.tensor([int(v) for v in lists.pop("source_row")], dtype=torch.long)
    batch_vec = np.repeat(np.arange(n, dtype=np.int64), node_counts)
    batch = Batch(
        x=torch.from_numpy(x),
        edge_index=torch.from_numpy(edge_index),
        edge_attr=torch.from_numpy(edge_attr),
        source_row=source_row,
        batch=torch.from_numpy(batch_vec),
        ptr=node_ptr,
        num_nodes=int(node_ptr[-1]),  # from_data_list sums the graphs' num_nodes
        **lists,
    )
    batch._num_graphs = n
    batch._slice_dict = {
        "x": node_ptr,
        "edge_index": edge_ptr,
        "edge_attr": edge_ptr,
        "source_row": torch.arange(n + 1),
        **{k: torch.arange(n + 1) for k in lists},
    }
    batch._inc_dict = {
        "x": zeros,
        "edge_index": node_ptr[:-1].clone(),
        "edge_attr": zeros,
        "source_row": zeros,
        **{k: None for k in lists},
    }
    return batch


def collate_graphs(data_list: Sequence):
    """Collate ``Data`` graphs (from :class:`GraphDataset`) into a ``Batch``.

    Equivalent to ``Batch.from_data_list`` on these graphs, and faster: one numpy
    concatenation per array with the node offsets added in place (numpy also sidesteps torch's
    intra-op threads, which make ``torch.cat`` crawl on an oversubscribed CPU).
    """
    if not data_list:
        raise ValueError("an empty batch")
    if any(d.x.device.type != "cpu" or d.edge_attr.requires_grad for d in data_list):
        from torch_geometric.data import Batch

        return Batch.from_data_list(list(data_list))
    node_counts = np.array([d.num_nodes for d in data_list], dtype=np.int64)
    edge_counts = np.array([d.edge_index.shape[1] for d in data_list], dtype=np.int64)
    x = np.concatenate([d.x.numpy() for d in data_list])
    edge_attr = np.concatenate([d.edge_attr.numpy() for d in data_list])
    edge_index = np.concatenate([d.edge_index.numpy() for d in data_list], axis=1)
    edge_index += np.repeat(np.cumsum(node_counts) - node_counts, edge_counts)
    keys = [
        f.name for f in fields(GraphMeta) if f.name not in ("arch_fingerprint", "init_fingerprint")
    ]
    attrs = [{k: d[k] for k in keys} for d in data_list]
    return make_batch(x, edge_index, edge_attr, node_counts, edge_counts, attrs)
