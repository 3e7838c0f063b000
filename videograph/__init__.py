"""videograph: graph learning for video understanding on PyTorch Geometric."""

__version__ = "0.1.0"
