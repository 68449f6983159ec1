"""The `amc-tf` command line (the top layer): `app` holds the click group and the one error
boundary, `commands` the registry, one `*_cmd` module per command (docs/design.md)."""

from amc_tf.cli.app import main, run  # noqa: F401  (the console script: amc_tf.cli.app:run)
