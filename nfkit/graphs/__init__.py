"""NeRF weights ↔ parameter graphs (seed 000 §3 and Appendix A; Lim et al., Graph Metanetworks).

- :mod:`nfkit.graphs.schema`    feature layouts and frozen type vocabularies
- :mod:`nfkit.graphs.mlp`, :mod:`~nfkit.graphs.triplane`, :mod:`~nfkit.graphs.hashgrid`
  one module per layer family
- :mod:`nfkit.graphs.build`     whole NeRF → graph, and the exact inverse
- :mod:`nfkit.graphs.store`     ``graph-shard`` artifacts, ``GraphDataset``, fast collate
- :mod:`nfkit.graphs.convert`   NeRF shards → graph shards (``nfkit build-graphs``), statistics
- :mod:`nfkit.graphs.nf2vec`    the nf2vec encoder's row-stacked input

Layouts: ``data_specs/graph-shard-v1.md``.
"""

from nfkit.graphs.build import graph_template, graph_to_params, nerf_to_graph
from nfkit.graphs.nf2vec import nf2vec_rows
from nfkit.graphs.schema import EDGE_TYPES, NODE_TYPES, ParamGraph
from nfkit.graphs.store import GraphDataset, GraphShard, collate_graphs

__all__ = [
    "EDGE_TYPES",
    "NODE_TYPES",
    "GraphDataset",
    "GraphShard",
    "ParamGraph",
    "collate_graphs",
    "graph_template",
    "graph_to_params",
    "nerf_to_graph",
    "nf2vec_rows",
]
