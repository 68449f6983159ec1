"""Every `amc-tf` command (click objects, walked in-process) and the shown spellings of its options."""

from __future__ import annotations

import click


def commands():
    """[(command path such as 'latency build', click.Command)] for every leaf command."""
    from amc_tf.cli.app import main

    out = []

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in sorted(cmd.commands.items()):
                walk(sub, [*path, name])
        else:
            out.append((" ".join(path), cmd))

    walk(main, [])
    return out


def shown_options(cmd):
    """[(shown spellings, hidden old spellings, click.Option)], --help left out."""
    out = []
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.hidden:
            continue
        aliases = tuple(getattr(p, "aliases", ()))
        names = tuple(n for n in (*p.opts, *p.secondary_opts) if n not in aliases)
        out.append((names, aliases, p))
    return out
