"""`python -m amc_tf`: the same as the `amc-tf` command."""

from amc_tf.core import startup

startup.begin()  # before the imports below: a Ctrl-C during them is one line, not a traceback

from amc_tf.cli.app import run  # noqa: E402

run(prog_name="amc-tf")
