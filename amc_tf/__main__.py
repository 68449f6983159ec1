"""`python -m amc_tf`: the same as the `amc-tf` command."""

from amc_tf.core import startup

startup.begin()  # before the imports below: a Ctrl-C during them is one line, not a traceback

from amc_tf.cli import main  # noqa: E402

main(prog_name="amc-tf")
