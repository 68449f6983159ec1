"""`python -m amc_tf`: the same as the `amc-tf` command."""

from amc_tf.cli import main

main(prog_name="amc-tf")
