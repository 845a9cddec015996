"""The CLIP bridge (seeds 002, 004): open_clip backend, CLIP embedding cache, nerf2clip /
clip2nerf training, zero-shot classification, retrieval from photos and text, and a small
CLIP that ``nfkit train-clip`` trains on a dataset. open_clip is imported on first use only."""
