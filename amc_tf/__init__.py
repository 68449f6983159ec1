"""amc-tf: channel-pruned PyTorch MobileNets to TensorFlow, TF-slim and TFLite."""

__version__ = "0.1.0"
