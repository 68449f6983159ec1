"""Every reference in the docs resolves: the files and folders of this repository that the
prose names, the `amc-tf` commands and options the docs show (in prose, inline code and every
console block, the ones marked no-run included), links between pages, and no path of one
machine. (tests/test_docs_examples.py runs the console blocks; this checks what the reader
is told to look at or type.)

The rules:

* a path whose first part is one of the checkout's top-level entries (`docs/`, `tests/...`,
  `$REPO/scripts/...`) exists; a part written as a placeholder (`<name>`, `*`, `…`) stands
  for a name made at run time, and the folder before it exists; a file in `checkpoints/`
  is one the user puts there, named in checkpoints/README.md;
* a bare `NAME.md` or `NAME.py` is a file of the repository (beside the page, or anywhere
  in it: docs/design.md names modules inside their folder's row);
* `../shared/fixtures` (the optional fixtures beside the checkout, which the tests that
  read them skip without) is the one place outside the repository the docs may name;
* `amc-tf WORD [WORD]` names a command (and subcommand), and every option after it in the
  same command line is that command's; an option anywhere else is some amc-tf command's,
  or is defined by one of the project's own tools (its name appears in their source:
  amc_tf/demo.py, benchmarks/, scripts/), or is in OTHER_TOOLS with the tool it belongs to;
* no absolute path of a machine (/work/..., /home/..., /tmp/...); device paths
  (/data/local/tmp, /sys, /proc) are fine.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from amc_tf.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "logs").glob("**/README.md")),
         ROOT / "checkpoints" / "README.md"]
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
SKIP_DIRS = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache"}
TOP = {p.name for p in ROOT.iterdir() if not p.name.startswith(".") and p.name not in SKIP_DIRS}
OUTSIDE = ("../shared/fixtures",)
OTHER_TOOLS = {"--config": "bazel, in the command that builds benchmark_model",
               "--head": "ray start", "--address": "ray start", "--resources": "ray start",
               "--disable-usage-stats": "ray start"}
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|home|root|Users|mnt|farm|tmp|opt|srv)/")
PLACEHOLDER = re.compile(r"<[^>]*>|\*|…|\.\.\.|\{[^}]*\}|\bNAME\b|\bOUTDIR\b")
PATH_TOKEN = re.compile(r"(?<![\w./$*<>~-])((?:\$REPO/|\.\./)?[\w.<>*…{},-]+(?:/[\w.<>*…{},-]*)+)")
BARE_FILE = re.compile(r"(?<![\w./$*<>~-])([\w-]+\.(?:md|py))\b")
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def repo_files() -> list[Path]:
    out = []
    for p in ROOT.rglob("*"):
        if not any(part in SKIP_DIRS for part in p.relative_to(ROOT).parts):
            out.append(p)
    return out


FILES = repo_files()
NAMES = {p.name for p in FILES}


def prose(page: Path):
    """(line number, text) of the page outside fenced blocks, with link targets removed
    (links are checked on their own)."""
    in_fence = None
    for i, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line)
        if m and in_fence is None:
            in_fence = m.group(1)
            continue
        if in_fence is not None:
            if line.startswith(in_fence):
                in_fence = None
            continue
        yield i, re.sub(r"\]\([^)]*\)", "]", line)


def command_lines(page: Path):
    """(line number, text) of every console command (continuations joined) and inline code span."""
    lines = page.read_text(encoding="utf-8").splitlines()
    in_fence, lang = None, ""
    i = 0
    while i < len(lines):
        line = lines[i]
        m = FENCE.match(line)
        if m and in_fence is None:
            in_fence, lang = m.group(1), m.group(2).lower()
        elif in_fence is not None and line.startswith(in_fence):
            in_fence = None
        elif in_fence is not None:
            if lang == "console" and line.startswith("$ "):
                start, text = i + 1, line[2:]
                while text.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    text = text[:-1] + " " + lines[i].strip()
                yield start, text
        else:
            for span in re.findall(r"`([^`]+)`", line):
                yield i + 1, span
        i += 1


def _walk(cmd: click.Command, path=()):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _walk(sub, path + (name,))


COMMANDS = dict(_walk(main))


def _opts(cmd: click.Command) -> set[str]:
    out = {"--help", "-h"}
    for p in cmd.params:
        out.update(p.opts + p.secondary_opts)
    return out


ALL_OPTIONS = set().union(*(_opts(c) for c in COMMANDS.values()))
TOOL_SOURCE = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in FILES if p.suffix == ".py" and (
    p.relative_to(ROOT).parts[0] in ("benchmarks", "scripts") or p == ROOT / "amc_tf" / "demo.py"))


def check_command_line(text: str) -> list[str]:
    """Problems with the `amc-tf ...` invocations in one command line or code span."""
    try:
        words = shlex.split(text, comments=False)
    except ValueError:
        words = text.split()
    bad = []
    for at, word in enumerate(words):
        if word != "amc-tf":
            continue
        rest = words[at + 1:]
        j = 0
        while j < len(rest) and rest[j] in _opts(main):
            j += 1
        path: tuple[str, ...] = ()
        while j < len(rest) and isinstance(COMMANDS[path], click.Group) and re.fullmatch(r"[a-z][a-z-]*", rest[j]):
            if path + (rest[j],) not in COMMANDS:
                bad.append(f"`amc-tf {' '.join(path + (rest[j],))}`: no such command")
                break
            path += (rest[j],)
            j += 1
        known = _opts(COMMANDS[path])
        for w in rest[j:]:
            if w in ("|", "||", "&&", ";", "&") or w.startswith((">", "2>")) or w == "amc-tf":
                break
            m = re.fullmatch(r"(--?[A-Za-z][\w-]*)(=.*)?", w)
            if m and m.group(1) not in known:
                bad.append(f"`amc-tf {' '.join(path)}` has no option {m.group(1)}")
    return bad


def test_no_page_names_a_path_of_one_machine():
    bad = [f"{page.relative_to(ROOT)}:{i}: {m.group(0)}…"
           for page in PAGES for i, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
           for m in MACHINE_PATH.finditer(line)]
    assert not bad, "\n".join(bad)


def _path_problem(page: Path, token: str) -> str | None:
    token = token.rstrip(".,:;)")
    if token.startswith("$REPO/"):
        token = token[len("$REPO/"):]
    if token.startswith("../"):
        if any(token.startswith(o) for o in OUTSIDE) or (page.parent / token).resolve().is_relative_to(ROOT):
            return None if (page.parent / token).exists() or any(token.startswith(o) for o in OUTSIDE) else "missing"
        return "outside the repository"
    if token.split("/")[0] not in TOP:
        return None  # not a path of this repository (a slim variable, another project's file, ...)
    m = PLACEHOLDER.search(token)
    if m:
        folder = token[: m.start()].rsplit("/", 1)[0]
        return None if (ROOT / folder).is_dir() else f"folder {folder}/ missing"
    if (ROOT / token).exists() or (page.parent / token).exists():
        return None
    if token.startswith("checkpoints/") and token.count("/") == 1:
        named = f"`{token.split('/')[1]}`" in (ROOT / "checkpoints" / "README.md").read_text(encoding="utf-8")
        return None if named else "missing, and not named in checkpoints/README.md"
    return "missing"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_paths_in_the_prose_exist_in_the_repository(page):
    bad = []
    for i, line in prose(page):
        for m in PATH_TOKEN.finditer(line):
            problem = _path_problem(page, m.group(1))
            if problem:
                bad.append(f"{page.relative_to(ROOT)}:{i}: {m.group(1)}: {problem}")
        for m in BARE_FILE.finditer(line):
            if m.group(1) not in NAMES and not (page.parent / m.group(1)).exists():
                bad.append(f"{page.relative_to(ROOT)}:{i}: {m.group(1)}: no such file in the repository")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    bad = []
    for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)", page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        if not (page.parent / target).exists():
            bad.append(f"{page.relative_to(ROOT)}: link to missing {target}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_commands_and_options_the_docs_show_exist(page):
    bad = []
    for i, text in command_lines(page):
        bad += [f"{page.relative_to(ROOT)}:{i}: {b}" for b in check_command_line(text)]
    for i, line in [*prose(page), *command_lines(page)]:
        for m in OPTION.finditer(line):
            opt = m.group(1)
            if not opt.startswith("--"):
                continue  # short options are checked in their command line above
            if opt in ALL_OPTIONS or opt in OTHER_TOOLS or f'"{opt}' in TOOL_SOURCE or f"'{opt}" in TOOL_SOURCE:
                continue
            bad.append(f"{page.relative_to(ROOT)}:{i}: {opt}: neither an amc-tf option nor one of the project's tools'")
    assert not bad, "\n".join(sorted(set(bad)))


def test_the_checker_catches_what_it_should():
    assert check_command_line("amc-tf bench m.tflite --warmup 3 --logdir x") == []
    assert check_command_line("amc-tf -v convert x -o y --slim-bn-eps 1e-3 | tail -1") == []
    assert check_command_line("amc-tf bench m --nope") == ["`amc-tf bench` has no option --nope"]
    assert check_command_line("amc-tf logs sumarize d") == ["`amc-tf logs sumarize`: no such command"]
    assert check_command_line("amc-tf -v COMMAND …") == []  # a placeholder, not a command
    assert _path_problem(ROOT / "docs" / "x.md", "tests/no_such_file.py") == "missing"
    assert _path_problem(ROOT / "docs" / "x.md", "converters/<format>_frontend.py") is None
    assert _path_problem(ROOT / "docs" / "x.md", "nothing/<x>.py") is None  # not a top-level entry
    assert _path_problem(ROOT / "README.md", "../../etc/passwd") == "outside the repository"
    assert _path_problem(ROOT / "docs" / "x.md", "checkpoints/mobilenet_imagenet_0.5flops_70.5.pth.tar") is None
    assert _path_problem(ROOT / "docs" / "x.md", "checkpoints/other.pth") is not None
    assert MACHINE_PATH.search("see /work/shared/reference notes") and not MACHINE_PATH.search("/data/local/tmp")
    assert BARE_FILE.findall("the classic problem (user_needs.md theme C)") == ["user_needs.md"]
    assert "user_needs.md" not in NAMES
