"""CLI commands, one module per concern. Each module exposes a `COMMANDS` list of click
commands; none imports TensorFlow at import time."""

import importlib

# Add a module here when it is written; every listed module must import.
COMMAND_MODULES = ("convert_cmd", "bench_cmd", "diff_cmd", "eval_cmd", "compare_cmd", "device_cmd", "latency_cmd", "study_cmd")


def register_all(group) -> None:
    for modname in COMMAND_MODULES:
        mod = importlib.import_module(f"amc_tf.cli.{modname}")
        for cmd in mod.COMMANDS:
            group.add_command(cmd)
