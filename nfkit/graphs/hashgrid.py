"""Parameter graph of a multi-resolution hash table (seed 000 §3 and Appendix A, Fig. 5 bottom left).

Canonical layout (tiny-cuda-nn): ``hash_table`` flat, level after level, entry-major
(``entry * F + feature``); level ``l`` holds ``T_l = spec.hash_level_sizes()[l]`` entries
(min(res_l³, T) rounded up to a multiple of 8).

Graph: per level, ``T_l`` entry nodes and ``F`` feature nodes; an edge from each entry to each
feature node of its level carrying the value, with position (level, entry) as raw integers
(pos2 unused). All ``T_l`` entries are included, also the few padding entries of a dense level
beyond res³ (they are stored parameters; including them keeps the graph a lossless image of the
weights). Entry nodes are ordered (index = entry number counted across levels, so no two entry
nodes share features); feature nodes are unordered (the F features of a level can be permuted
together with the MLP's input columns without changing the function). The N·F feature nodes,
level-major, are the MLP's inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nfkit.graphs.schema import GraphAssembler, ParamBlock


def add_hash_grid(
    asm: GraphAssembler, level_sizes: Sequence[int], features: int, layer: int = 0
) -> tuple[int, ParamBlock]:
    """Add entry nodes (layer ``layer``), feature nodes (layer ``layer + 1``) and the edges.

    Returns (id of the first feature node, the block of the ``hash_table`` tensor).
    """
    sizes = np.asarray(level_sizes, dtype=np.int64)
    n_entries = int(sizes.sum())
    entry_start = asm.add_nodes(n_entries, layer, "hash_entry", index=np.arange(n_entries))
    feat_start = asm.add_nodes(len(sizes) * features, layer + 1, "hash_feature")
    level = np.repeat(np.arange(len(sizes)), sizes * features)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    flat = np.arange(n_entries * features)
    entry_global, feat = np.divmod(flat, features)
    entry_local = entry_global - offsets[level]
    pos = np.stack([level, entry_local], axis=1).astype(np.float32)
    start, stop = asm.add_edges(
        entry_start + entry_global, feat_start + level * features + feat, layer, "hash", pos=pos
    )
    block = ParamBlock(
        "hash_table",
        (n_entries * features,),
        "hash",
        "hash",
        layer,
        start,
        stop,
        entry_start,
        feat_start,
        n_entries,
        (features, *map(int, sizes)),
    )
    return feat_start, block


def hash_flat_index(block: ParamBlock, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Flat position in ``hash_table`` of each edge; ValueError on a foreign edge."""
    features, *sizes = block.extra
    bounds = np.cumsum(sizes)
    entry = src - block.src_start
    feat_node = dst - block.dst_start
    if np.any(
        (entry < 0) | (entry >= bounds[-1]) | (feat_node < 0) | (feat_node >= len(sizes) * features)
    ):
        raise ValueError("hash_table: an edge does not join an entry node to a feature node")
    level = np.searchsorted(bounds, entry, side="right")
    if np.any(feat_node // features != level):
        raise ValueError("hash_table: an edge joins an entry to a feature node of another level")
    return entry * features + feat_node % features
