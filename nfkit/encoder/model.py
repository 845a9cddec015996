"""The trainable whole of ``pretrain-encoder``: encoder (+ decoder) (+ SigLIP's t and b)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from nfkit.encoder.config import EncoderConfig
from nfkit.encoder.data import GraphBank
from nfkit.losses import SigLipLoss
from nfkit.models.decoder import DecoderSpec, ImplicitDecoder
from nfkit.models.edge_norm import EdgeValueNorm, edge_stats, layout_key
from nfkit.models.gmn import GMNEncoder, GMNSpec
from nfkit.models.nf2vec import Nf2vecEncoder
from nfkit.models.scale import EmbeddingScale


def group_key(group) -> str:
    """The key of a graph group's layout and init (``nfkit.models.edge_norm.layout_key``)."""
    return layout_key(group.structure_key, group.meta[0].init_fingerprint)


class EncoderModel(nn.Module):
    """Shapes: embed(bank, items) -> (len(items), embed_dim), in the order of ``items``."""

    def __init__(self, config: EncoderConfig, nf2vec_width: int = 0) -> None:
        super().__init__()
        self.config = config
        if config.encoder == "gmn":
            self.encoder: nn.Module = GMNEncoder(GMNSpec(config.hidden, config.layers, config.embed_dim))
        else:
            if nf2vec_width < 1:
                raise ValueError("the nf2vec encoder needs the row width of the graphs' nf2vec rows")
            widths = (512, 512, config.embed_dim, config.embed_dim)
            self.encoder = Nf2vecEncoder(nf2vec_width, widths)
        if config.encoder == "gmn" and config.value_norm == "edge":
            # on the encoder: the per-edge statistics travel in its state and fingerprint
            self.encoder.add_module("value_norm", EdgeValueNorm())
        if config.embed_norm:
            # On the encoder, so that it travels in the checkpoint's encoder state and in the
            # encoder fingerprint: the statistics are part of what an embedding is
            # (nfkit/models/scale.py). The identity until training ends.
            self.encoder.add_module("out_scale", EmbeddingScale(config.embed_dim))
        self.decoder = (
            ImplicitDecoder(DecoderSpec(config.embed_dim, config.decoder_hidden, config.decoder_freq, config.decoder_norm))
            if config.uses_decoder
            else None
        )
        if config.embed_norm and self.decoder is not None:
            self.decoder.add_module("in_scale", EmbeddingScale(config.embed_dim))
        self.siglip = SigLipLoss() if config.uses_contrastive else None

    def fit_value_stats(self, bank: GraphBank, items: Sequence[tuple[str, int]]) -> None:
        """Set the GMN's edge-value statistics from the graphs ``items`` (the training graphs)."""
        import numpy as np

        from nfkit.graphs.schema import ELAYER, ETYPE, VALUE

        if not isinstance(self.encoder, GMNEncoder):
            return
        norm = getattr(self.encoder, "value_norm", None)
        layers, types, sums, sqs, counts = [], [], [], [], []
        by_arch: dict[str, list[int]] = {}
        for a, r in items:
            by_arch.setdefault(a, []).append(r)
        for arch, rows in by_arch.items():
            g = bank.archs[arch]
            if g.structure is not None:
                raw = g.structure.edge_raw.numpy()
                vals = g.values[np.asarray(rows)].astype(np.float64)
                if norm is not None and len(rows) >= 2:
                    norm.set(group_key(g), *edge_stats(vals))
                keys = raw[:, ELAYER].astype(np.int64) * 1000 + raw[:, ETYPE].astype(np.int64)
                col_sum, col_sq = vals.sum(0), (vals**2).sum(0)
            else:
                raw = np.concatenate([g.sparse[r].edge_attr for r in rows])
                keys = raw[:, ELAYER].astype(np.int64) * 1000 + raw[:, ETYPE].astype(np.int64)
                col_sum, col_sq = raw[:, VALUE].astype(np.float64), raw[:, VALUE].astype(np.float64) ** 2
                rows = [0]
            for k in np.unique(keys):
                m = keys == k
                layers.append(k // 1000)
                types.append(k % 1000)
                sums.append(col_sum[m].sum())
                sqs.append(col_sq[m].sum())
                counts.append(m.sum() * len(rows))
        t = torch.tensor
        self.encoder.pre.set_value_stats(t(layers), t(types), t(sums), t(sqs), t(counts, dtype=torch.float64))

    def embed(
        self,
        bank: GraphBank,
        items: Sequence[tuple[str, int]],
        max_block_edges: int = 0,
        readout_edges: int = 0,
        generator: torch.Generator | Callable[[str], torch.Generator] | None = None,
        chunk: int = 0,
    ) -> Tensor:
        """Embeddings of graphs ``items`` = [(arch, row)], grouped by architecture internally.

        ``max_block_edges`` / ``readout_edges`` sample edges (training; the same subset for every graph
        of an architecture in the call), drawn from ``generator``, or from ``generator(arch)`` when
        it is a function of the architecture's name (training: one generator per architecture and
        step, so that the subset does not depend on which other graphs share the call).
        ``chunk`` > 0 embeds at most that many graphs at once.
        """
        device = next(self.parameters()).device
        out: list[Tensor | None] = [None] * len(items)
        by_arch: dict[str, list[int]] = {}
        for k, (arch, _) in enumerate(items):
            by_arch.setdefault(arch, []).append(k)
        for arch, ks in by_arch.items():
            group = bank.archs[arch]
            rows = [items[k][1] for k in ks]
            step = chunk if chunk > 0 else len(rows)
            for s in range(0, len(rows), step):
                part = rows[s : s + step]
                gen = generator(arch) if callable(generator) else generator
                emb = self._embed_group(group, part, device, max_block_edges, readout_edges, gen)
                for j, k in enumerate(ks[s : s + step]):
                    out[k] = emb[j]
        emb = torch.stack(out)  # type: ignore[arg-type]
        scale = getattr(self.encoder, "out_scale", None)
        return emb if scale is None else scale(emb)

    def scales(self) -> list[EmbeddingScale]:
        """The encoder's output scale and the decoder's input scale (empty without embed_norm)."""
        return [m for m in (getattr(self.encoder, "out_scale", None), getattr(self.decoder, "in_scale", None)) if m is not None]

    @torch.no_grad()
    def set_embedding_stats(self, bank: GraphBank, items: Sequence[tuple[str, int]], chunk: int = 4) -> Tensor | None:
        """Standardise what :meth:`embed` returns by the statistics of the embeddings of ``items``
        (the training graphs, every edge, eval mode), and make the decoder undo it. Returns the
        standardised embeddings of ``items`` (what :meth:`embed` now gives), None without scales."""
        scales = self.scales()
        if not scales:
            return None
        was_training = self.training
        self.eval()
        for s in scales:
            s.reset()
        raw = self.embed(bank, items, chunk=chunk)
        for s in scales:
            s.set_from(raw)
        self.train(was_training)
        return self.encoder.out_scale(raw)

    def _edge_stats(self, group) -> tuple[Tensor, Tensor] | None:
        """The stored per-edge statistics of a dense group's layout, or None (an unseen layout:
        per (layer, type) only)."""
        norm = getattr(self.encoder, "value_norm", None)
        return None if norm is None else norm.stats(group_key(group))

    def _embed_group(self, group, rows, device, max_block_edges, readout_edges, generator) -> Tensor:
        import numpy as np

        if isinstance(self.encoder, Nf2vecEncoder):
            if group.nf2vec is None:
                raise ValueError(f"{group.arch}: no nf2vec rows loaded")
            x = torch.from_numpy(group.nf2vec[np.asarray(rows)]).to(device)
            return self.encoder(x)
        if group.structure is not None:
            sample = None
            if max_block_edges > 0 or readout_edges > 0:
                sample = group.structure.sample(max_block_edges, readout_edges, generator)
                sample = None if sample is None else sample.to(device)
            values = torch.from_numpy(group.values[np.asarray(rows)]).to(device)
            stats = self._edge_stats(group)
            if stats is None:
                return self.encoder.forward_dense(values, group.structure, sample)
            mean, std = (t.to(device) for t in stats)
            return self.encoder.forward_dense((values - mean) / std, group.structure, sample, layer_stats=False)
        from torch_geometric.data import Batch

        batch = Batch.from_data_list([group.sparse[r].to_data() for r in rows]).to(device)
        return self.encoder(batch)
