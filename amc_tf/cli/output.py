"""What every command shares: its JSON output, and the no-op decorator older command modules
still wear. Commands import this, never `amc_tf.cli.app` (which imports them)."""

from __future__ import annotations

import json

import click


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


def echo(message="", err: bool = False, nl: bool = True) -> None:
    """One line of output (stdout, or stderr with err=True): every control character in it, a
    newline included, is made visible (amc_tf.core.textsafe.safe), so text from files and file
    names can neither forge a line (`\\nerror: ...`) nor send escape sequences to the terminal."""
    from amc_tf.core.textsafe import safe

    click.echo(safe(message), err=err, nl=nl)


def echo_block(text: str, err: bool = False, nl: bool = True) -> None:
    """The tool's own multi-line output (a table, a report): newlines kept, every other control
    character made visible. Untrusted parts (names, errors) are passed through `safe` when the
    block is composed, so a newline inside them cannot start a line."""
    from amc_tf.core.textsafe import safe_lines

    click.echo(safe_lines(text), err=err, nl=nl)


def progress(message: str) -> None:
    """A progress or skip line on stderr, sanitized as `echo`."""
    echo(message, err=True)


def say_skipped(items) -> None:
    """Skipped files, one rule in every command: each named on stderr (even with -q, like a
    warning) as `amc-tf: skipped (unreadable): FILE: WHY`; --json holds them as "skipped_files"."""
    for item in items:
        echo(f"amc-tf: skipped (unreadable): {item['file']}: {item['error']}", err=True)
