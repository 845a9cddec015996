"""Generation from the embedding space: latent GANs per class, interpolation, NeRFs out."""
