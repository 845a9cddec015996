"""A torch Dataset over the graphs of many graph shards."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from nfkit.graphs.collate import collate_graphs
from nfkit.graphs.shard_reader import GraphShard, find_graph_shards
from nfkit.graphs.shard_writer import GraphMeta


class GraphDataset:
    """A ``torch.utils.data.Dataset`` of the graphs of many shards, yielding ``Data`` objects.

    ``archs`` keeps only graphs of those architecture names. Use :func:`collate_graphs` as the
    DataLoader's ``collate_fn`` (or :meth:`loader`). Shards are memory-mapped, so worker
    processes share the page cache; at most ``max_open`` shards stay mapped at a time.
    """

    def __init__(
        self,
        paths: str | Path | Iterable[str | Path],
        archs: Iterable[str] | None = None,
        max_open: int = 64,
    ) -> None:
        self.shards = [GraphShard(p) for p in find_graph_shards(paths)]
        self.max_open = max(1, int(max_open))
        self._open: OrderedDict[int, None] = OrderedDict()
        keep = None if archs is None else {a.lower() for a in archs}
        self.items: list[tuple[int, int]] = [
            (s, i)
            for s, shard in enumerate(self.shards)
            for i, m in enumerate(shard.meta)
            if keep is None or m.arch.lower() in keep
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        s, i = self.items[k]
        self._open[s] = None
        self._open.move_to_end(s)
        if len(self._open) > self.max_open:
            self.shards[self._open.popitem(last=False)[0]].release()
        return self.shards[s].data(i)

    def meta(self, k: int) -> GraphMeta:
        s, i = self.items[k]
        return self.shards[s].meta[i]

    def loader(self, batch_size: int = 8, shuffle: bool = False, **kwargs):
        """A ``torch.utils.data.DataLoader`` over this dataset collating with :func:`collate_graphs`."""
        from torch.utils.data import DataLoader

        return DataLoader(
            self, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_graphs, **kwargs
        )
