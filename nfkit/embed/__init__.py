"""Embeddings of NeRFs: the artifact that every downstream stage reads."""
