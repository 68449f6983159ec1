"""amc-tf: channel-pruned PyTorch MobileNets to TensorFlow, TF-slim and TFLite."""

from amc_tf.core.version import __version__  # noqa: F401
