"""The version of amc-tf (re-exported as `amc_tf.__version__`)."""

__version__ = "0.1.0"
