"""Pure ``nn.Module``s of nfkit (no I/O): GMN and nf2vec encoders, the implicit decoder."""
