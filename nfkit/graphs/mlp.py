"""Parameter graph of an MLP (Lim et al.; seed 000 Appendix A, Fig. 5 top left).

Linear layer ``i`` with weight ``W`` of shape (out, in): a directed edge from every input neuron
``j`` to every output neuron ``o`` carrying ``W[o, j]``; edges are listed in ``W``'s row-major
order. A bias vector ``b`` (out,), where present, adds one bias node (in the output neurons'
layer) with an edge to each output neuron carrying ``b[o]``. Consecutive layers share their
neuron nodes: layer ``i``'s outputs are layer ``i+1``'s inputs.

tiny-cuda-nn's padding inputs of the first layer (``ArchSpec.n_input_padding`` columns of
``mlp.0`` after the encoding's, fed the constant 1) are what a bias node is, a constant-1
input: each becomes one ``bias`` node (unordered, like every bias node: the padding columns
can be permuted without changing the function) in the first layer's output layer, with a
``linear_bias`` edge to each output neuron carrying ``W[o, encoding_dim + k]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nfkit.graphs.schema import GraphAssembler, ParamBlock


def bias_name(i: int) -> str:
    """Name of the optional bias tensor of linear layer ``i`` (shape (out_i,))."""
    return f"mlp.{i}.bias"


def _dense_edges(
    asm: GraphAssembler,
    name: str,
    edge_type: str,
    layer: int,
    src_start: int,
    dst_start: int,
    shape: tuple[int, int],
    col_start: int,
    n_cols: int,
) -> ParamBlock:
    """Edges from ``n_cols`` source nodes to ``shape[0]`` targets carrying the columns
    ``col_start : col_start + n_cols`` of the (out, in) matrix ``name``, row-major."""
    out_dim, in_dim = shape
    src = src_start + np.tile(np.arange(n_cols), out_dim)
    dst = dst_start + np.repeat(np.arange(out_dim), n_cols)
    start, stop = asm.add_edges(src, dst, layer, edge_type)
    return ParamBlock(
        name,
        (out_dim, in_dim),
        "linear",
        edge_type,
        layer,
        start,
        stop,
        src_start,
        dst_start,
        n_cols,
        (out_dim, in_dim, col_start, n_cols),
    )


def add_mlp(
    asm: GraphAssembler,
    in_start: int,
    shapes: Sequence[tuple[int, int]],
    first_layer: int,
    biased: Sequence[int] = (),
    n_padding: int = 0,
) -> list[ParamBlock]:
    """Add the MLP after its input nodes ``[in_start, in_start + shapes[0][1] - n_padding)``.

    The last ``n_padding`` columns of the first layer are constant-1 padding inputs: one bias
    node each (added after the first layer's outputs), with ``linear_bias`` edges.

    Node layers: inputs are in ``first_layer``; the outputs of linear ``i`` (and its bias
    nodes) in ``first_layer + i + 1`` (hidden neurons unordered, the last layer's outputs
    ordered 0..out-1). Edge layer of linear ``i`` = ``first_layer + i``.
    """
    blocks: list[ParamBlock] = []
    biased = set(biased)
    n = len(shapes)
    if not 0 <= n_padding < shapes[0][1]:
        raise ValueError(f"{n_padding} padding inputs for a first layer of {shapes[0][1]} inputs")
    for i, (out_dim, in_dim) in enumerate(shapes):
        layer = first_layer + i
        last = i == n - 1
        pad = n_padding if i == 0 else 0
        out_start = asm.add_nodes(
            out_dim,
            layer + 1,
            "neuron_output" if last else "neuron_hidden",
            index=np.arange(out_dim) if last else None,
        )
        name = f"mlp.{i}"
        blocks.append(
            _dense_edges(
                asm, name, "linear_weight", layer, in_start, out_start, (out_dim, in_dim), 0, in_dim - pad
            )
        )
        if pad:
            pad_start = asm.add_nodes(pad, layer + 1, "bias")
            blocks.append(
                _dense_edges(
                    asm, name, "linear_bias", layer, pad_start, out_start, (out_dim, in_dim), in_dim - pad, pad
                )
            )
        if i in biased:
            bias_node = asm.add_nodes(1, layer + 1, "bias")
            start, stop = asm.add_edges(
                np.full(out_dim, bias_node), out_start + np.arange(out_dim), layer, "linear_bias"
            )
            blocks.append(
                ParamBlock(
                    bias_name(i),
                    (out_dim,),
                    "bias",
                    "linear_bias",
                    layer,
                    start,
                    stop,
                    bias_node,
                    out_start,
                    1,
                    (out_dim,),
                )
            )
        in_start = out_start
    return blocks


def block_values(block: ParamBlock, tensor: np.ndarray) -> np.ndarray:
    """The values of ``block``'s edges, in edge order, from its whole tensor."""
    if block.kind == "linear":
        _, _, col_start, n_cols = block.extra
        return tensor[:, col_start : col_start + n_cols]
    return tensor


def linear_flat_index(block: ParamBlock, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Flat (row-major) position in W of each edge of a ``linear`` block (weight or padding
    columns); ValueError on a foreign edge."""
    out_dim, in_dim, col_start, n_cols = block.extra
    col = src - block.src_start
    row = dst - block.dst_start
    if np.any((col < 0) | (col >= n_cols) | (row < 0) | (row >= out_dim)):
        raise ValueError(f"{block.name}: an edge does not join this layer's neurons")
    return row * in_dim + col_start + col


def bias_flat_index(block: ParamBlock, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    (out_dim,) = block.extra
    row = dst - block.dst_start
    if np.any(src != block.src_start) or np.any((row < 0) | (row >= out_dim)):
        raise ValueError(f"{block.name}: a bias edge does not join the bias node to this layer")
    return row


def mlp_forward(
    weights: Sequence[np.ndarray],
    inputs: np.ndarray,
    activation: str = "relu",
    biases: Mapping[int, np.ndarray] | None = None,
) -> np.ndarray:
    """Plain numpy forward of an MLP (raw outputs, no output activation).

    Shapes: weights[i]: (out_i, in_i); inputs: (n, in_0) -> (n, out_last).
    """
    act = {"relu": lambda h: np.maximum(h, 0.0), "sine": np.sin}[activation]
    h = np.asarray(inputs, dtype=np.float64)
    for i, w in enumerate(weights):
        h = h @ np.asarray(w, dtype=np.float64).T
        if biases and i in biases:
            h = h + biases[i]
        if i < len(weights) - 1:
            h = act(h)
    return h
