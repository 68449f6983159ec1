"""One vocabulary across commands: every command's options against docs/cli.md's table, old
spellings hidden but still accepted, a help text on every option and --json on every command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cli_run import run
from cli_walk import commands, shown_options

TABLE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def vocabulary() -> dict[tuple[str, ...], dict]:
    """{shown spellings: {"commands": {...}, "aliases": {command: (old spellings)}}} from docs/cli.md."""
    rows = {}
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        names = tuple(re.findall(r"`([^`]+)`", cells[0]))
        aliases: dict[str, tuple[str, ...]] = {}
        for old, where in re.findall(r"`([^`]+)` \(([^)]+)\)", cells[3]):
            aliases[where] = aliases.get(where, ()) + (old,)
        rows[names] = {"commands": {c.strip() for c in cells[2].split(",")}, "aliases": aliases}
    return rows


def test_every_option_is_in_the_vocabulary_table_and_the_table_is_true():
    table = vocabulary()
    assert len(table) > 40
    seen = set()
    problems = []
    for path, cmd in commands():
        for names, aliases, opt in shown_options(cmd):
            row = table.get(names)
            if row is None:
                problems.append(f"{path}: {'/'.join(names)} is not in docs/cli.md")
                continue
            seen.add((names, path))
            if path not in row["commands"]:
                problems.append(f"{path}: {'/'.join(names)} is in the table but not for {path}")
            if tuple(sorted(aliases)) != tuple(sorted(row["aliases"].get(path, ()))):
                problems.append(f"{path}: {'/'.join(names)} hides {aliases}, the table says {row['aliases'].get(path)}")
            if not (opt.help or "").strip():
                problems.append(f"{path}: {'/'.join(names)} has no help text")
    for names, row in table.items():
        for path in row["commands"]:
            if (names, path) not in seen:
                problems.append(f"docs/cli.md lists {'/'.join(names)} for {path}, which has no such option")
    assert not problems, "\n".join(problems)


def test_every_command_has_json():
    lacking = [path for path, cmd in commands() if not any("--json" in names for names, _, _ in shown_options(cmd))]
    assert lacking == []


def test_one_name_per_concept():
    """The spellings the issue found split across commands are one name each now."""
    everywhere = {names for _, cmd in commands() for names, _, _ in shown_options(cmd)}
    flat = {n for names in everywhere for n in names}
    assert {"--data", "--calibration", "--n", "--out"} & flat == set()
    assert {("--images",), ("--limit",), ("-o", "--output")} <= everywhere
    profiles = [opt for _, cmd in commands() for names, _, opt in shown_options(cmd) if names == ("--profile",)]
    assert len(profiles) == 3 and all(opt.type.name == "choice" for opt in profiles)


def test_old_spellings_still_work_and_stay_out_of_help(tmp_path):
    help_text = run("parity", "--help").stdout
    assert "--limit" in help_text and "--n " not in help_text
    assert "--data" not in run("eval", "--help").stdout
    convert_help = run("convert", "--help").stdout
    assert "--calibration " not in convert_help and "--out " not in convert_help and "-o, --output" in convert_help
    # the old spelling parses: bounds are checked under the new name
    proc = run("parity", str(tmp_path), "--n", "0")
    assert proc.returncode == 2 and "'--limit'" in proc.stderr
    proc = run("eval", "x.tflite", "--data", str(tmp_path / "none"))
    assert proc.returncode == 2 and "--images" in proc.stderr, proc.stderr


@pytest.mark.parametrize("name", ["9.5flops", ""])
def test_latency_predict_profile_is_a_choice(name, tmp_path):
    proc = run("latency", "predict", "--profile", name, "--lut", str(tmp_path / "lut.json"))
    assert proc.returncode == 2 and "is not one of" in proc.stderr and "0.5flops" in proc.stderr


def test_device_benchmark_binary_json(tmp_path):
    proc = run("device", "benchmark-binary", str(tmp_path / "bm"), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["path"] == str(tmp_path / "bm") and (tmp_path / "bm").stat().st_mode & 0o111
