"""What every command shares: its JSON output, and the no-op decorator older command modules
still wear. Commands import this, never `amc_tf.cli.app` (which imports them)."""

from __future__ import annotations

import json

import click


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


def say_skipped(items) -> None:
    """Skipped files, one rule in every command: each named on stderr (even with -q, like a
    warning) as `amc-tf: skipped (unreadable): FILE: WHY`; --json holds them as "skipped_files"."""
    for item in items:
        click.echo(f"amc-tf: skipped (unreadable): {item['file']}: {item['error']}", err=True)
