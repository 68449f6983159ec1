"""The `amc-tf` command line (the top layer): `app` holds the click group and the one error
boundary, `commands` the registry, one `*_cmd` module per command (docs/design.md)."""

import os as _os
import sys as _sys

if _os.path.basename(_sys.argv[0] or "") == "amc-tf":  # the console script: see amc_tf/core/startup.py
    from amc_tf.core import startup as _startup

    _startup.begin()

from amc_tf.cli.app import main, run  # noqa: E402,F401  (the console script: amc_tf.cli.app:run)
