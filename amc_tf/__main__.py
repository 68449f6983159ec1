"""`python -m amc_tf`: the same as the `amc-tf` command."""

from amc_tf.cli.app import run

run(prog_name="amc-tf")
