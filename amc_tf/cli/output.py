"""What every command shares: its JSON output, and the no-op decorator older command modules
still wear. Commands import this, never `amc_tf.cli.app` (which imports them)."""

from __future__ import annotations

import json

import click


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))
