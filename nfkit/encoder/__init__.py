"""pretrain-encoder and embed: one encoder for NeRFs of every architecture (seed 000)."""
