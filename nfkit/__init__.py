"""nfkit: deep learning on the weights of Neural Radiance Fields."""

__version__ = "0.1.0"
