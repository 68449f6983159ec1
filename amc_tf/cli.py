"""The `amc-tf` command line. Commands import TensorFlow lazily so `--help` is instant.

Every command turns an `AmcError` into one line on stderr and exit code 2; exit code 1
is reserved for "ran fine, but a gate failed" (parity, diff); 0 is success.
"""

from __future__ import annotations

import functools
import json
import os
import sys

# TensorFlow's C++ start-up chatter (CPU feature notices, absl warnings) is noise for CLI
# users; a user who wants it can set TF_CPP_MIN_LOG_LEVEL=0.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click

from amc_tf import __version__
from amc_tf.errors import AmcError


def handle_errors(fn):
    """Decorator: print an AmcError as `error: ...` on stderr and exit with its code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AmcError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="amc-tf")
@click.option("-v", "--verbose", is_flag=True, help="Show TensorFlow/LiteRT start-up logs (hidden by default).")
def main(verbose=False):
    """Convert channel-pruned PyTorch MobileNets to TF-slim / SavedModel / TFLite,
    benchmark them with the Pixel-1 protocol and prove accuracy parity."""
    from amc_tf import quiet

    quiet.install(verbose)


def _register() -> None:
    from amc_tf.commands import register_all

    register_all(main)


_register()
