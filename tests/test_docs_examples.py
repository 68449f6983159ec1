"""Every shell example in README.md and docs/*.md runs, and shows what it really prints.

The rules (the final word on the format; /work/coord/CONVENTIONS.md summarises them):

1. A shell example is a fenced block whose info string is `console`. Inside it, a line
   starting with `$ ` is a command; a command ending in `\\` continues on the next line.
   Every other line is output shown for the command above it.
2. Blocks fenced as ```sh, ```bash or ```shell are not allowed (the test fails on them),
   and neither is a block of another kind that holds a `$ ` line: write `console`.
3. Every document runs on its own: its commands run one after another, in document
   order, each in `bash -o pipefail -c` in one fresh scratch folder per document, with a
   timeout of 600 s per command. Shell state does not carry over from one command to the
   next (files do). The environment: the project's venv first on PATH (so `amc-tf` and
   `python` are the project's), `REPO` (the checkout), `DIGITS` (tests/data/digits) and
   `SAMPLE` (../shared/fixtures/imagenet-sample, beside the checkout, when it exists),
   AMC_TF_VERBOSE unset.
4. Every command must exit 0. To show a failure, show its code:
   `$ amc-tf convert x.tflite -o out; echo "exit $?"` and the line `exit 2` below it.
5. Shown output lines must appear in the command's real output (stdout and stderr
   together), in the same order, each matching a whole line (trailing spaces ignored); other
   real lines may come between them. Inside a shown line, `...` matches any text; a line that
   is only `...` stands for lines left out and matches nothing. Show only deterministic
   output and write `...` over timings, speeds and paths that vary.
6. A block preceded by the line `<!-- no-run: REASON -->` (e.g. it needs an Android phone)
   is not run; REASON must be given. When `SAMPLE` does not exist, a block that mentions
   `$SAMPLE` is skipped, and the test reports which; blocks after it must not need its files.
7. README.md has at most 300 lines.
8. A document whose examples need TCP ports (an emulated device, an adb server) declares
   them in a line `<!-- ports: 15555 15556 15038 -->`: before its commands run, each of
   those numbers (as a whole word, in commands and shown output alike) is replaced by a free
   port of this machine, in the same order (the smallest number gets the smallest port), so
   the examples read with fixed numbers but never depend on a port a user may hold.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
SAMPLE = ROOT.parent / "shared" / "fixtures" / "imagenet-sample"
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
NO_RUN = re.compile(r"^<!--\s*no-run:\s*(.*?)\s*-->\s*$")
PORTS = re.compile(r"^<!--\s*ports:\s*([\d\s]+?)\s*-->\s*$", re.M)
TIMEOUT_S = 600


@dataclass
class Command:
    line: int  # 1-based line of the `$ ` in the document
    text: str
    shown: list[str] = field(default_factory=list)


@dataclass
class Block:
    line: int
    lang: str
    body: list[str]
    no_run: str | None = None  # the reason, when marked

    def commands(self) -> list[Command]:
        out: list[Command] = []
        cont = False
        for i, raw in enumerate(self.body):
            if cont:
                out[-1].text += "\n" + raw
                cont = raw.endswith("\\")
            elif raw.startswith("$ "):
                out.append(Command(self.line + 1 + i, raw[2:]))
                cont = raw.endswith("\\")
            elif out:
                out[-1].shown.append(raw)
        return out


def blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines) and not lines[j].startswith(fence):
            j += 1
        prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        mark = NO_RUN.match(prev)
        found.append(Block(i + 1, lang, lines[i + 1:j], mark.group(1) if mark else None))
        i = j + 1
    return found


def line_pattern(shown: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(part) for part in shown.rstrip().split("...")))


def check_output(shown: list[str], real: str) -> str | None:
    """None when every shown line matches a real line, in order; else what is missing."""
    real_lines = [r.rstrip() for r in real.splitlines()]
    pos = 0
    for s in shown:
        if s.strip() in ("...", ""):
            continue
        pat = line_pattern(s)
        while pos < len(real_lines) and not pat.fullmatch(real_lines[pos]):
            pos += 1
        if pos == len(real_lines):
            return s
        pos += 1
    return None


def declared_ports(text: str) -> list[int]:
    return sorted({int(n) for m in PORTS.finditer(text) for n in m.group(1).split()})


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all held open until every one is picked), ascending."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return sorted(s.getsockname()[1] for s in socks)
    finally:
        for s in socks:
            s.close()


def port_substitution(declared: list[int]):
    """A function replacing each declared port (a whole word) by its free stand-in."""
    if not declared:
        return lambda text: text
    mapping = dict(zip(declared, free_ports(len(declared))))
    pattern = re.compile(r"(?<!\d)(" + "|".join(map(str, declared)) + r")(?!\d)")
    return lambda text: pattern.sub(lambda m: str(mapping[int(m.group(1))]), text)


def env_for(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "AMC_TF_VERBOSE"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["REPO"] = str(ROOT)
    env["DIGITS"] = str(ROOT / "tests" / "data" / "digits")
    if SAMPLE.is_dir():
        env["SAMPLE"] = str(SAMPLE)
    env["HOME"] = env.get("HOME", str(tmp))
    return env


def test_no_sh_bash_or_unmarked_shell_blocks():
    bad = []
    for doc in DOCS:
        for b in blocks(doc):
            if b.lang in ("sh", "bash", "shell", "zsh"):
                bad.append(f"{doc.name}:{b.line}: ```{b.lang} block; write ```console with `$ ` commands")
            elif b.lang != "console" and any(line.startswith("$ ") for line in b.body):
                bad.append(f"{doc.name}:{b.line}: a `$ ` command in a ```{b.lang or '(plain)'} block; write ```console")
            elif b.lang == "console" and b.no_run is not None and not b.no_run:
                bad.append(f"{doc.name}:{b.line}: no-run without a reason")
            elif b.lang == "console" and not b.commands():
                bad.append(f"{doc.name}:{b.line}: a console block without a `$ ` command")
    assert not bad, "\n".join(bad)


def test_readme_fits_on_a_few_screens():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= 300, f"README.md has {n} lines; move detail to docs/"


def test_declared_ports_become_free_ports_in_the_same_order():
    text = "x\n<!-- ports: 15556 15038 15555 -->\n$ adb -P 15038 connect 127.0.0.1:15555 # not 155551 nor 115555"
    declared = declared_ports(text)
    assert declared == [15038, 15555, 15556]
    sub = port_substitution(declared)
    out = sub("127.0.0.1:15555, 127.0.0.1:15556 P=15038 155551 115555 x15555")
    a, b, server = (int(n) for n in re.findall(r"(?<=:)\d+|(?<==)\d+", out))
    assert server < a < b and 15038 not in (a, b, server) and len({a, b, server}) == 3
    assert out.endswith(" 155551 115555 x" + str(a))
    for port in (a, b, server):  # each is free: it can be bound
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_the_line_matcher():
    assert check_output(["a ... c", "...", "x"], "zz\na b c\nq\nx\n") is None
    assert check_output(["x", "a b c"], "a b c\nx\n") == "a b c"  # order matters
    assert check_output(["a b"], "a b c\n") == "a b"  # whole lines


WITH_EXAMPLES = [d for d in DOCS if any(b.lang == "console" for b in blocks(d))]


@pytest.mark.parametrize("doc", WITH_EXAMPLES, ids=[str(d.relative_to(ROOT)) for d in WITH_EXAMPLES])
def test_examples_run_and_print_what_they_show(doc, tmp_path):
    runnable = [b for b in blocks(doc) if b.lang == "console"]
    env, work = env_for(tmp_path), tmp_path / "work"
    ports = port_substitution(declared_ports(doc.read_text(encoding="utf-8")))
    work.mkdir()
    skipped, failures = [], []
    for b in runnable:
        if b.no_run:
            continue
        if not SAMPLE.is_dir() and any("$SAMPLE" in c.text for c in b.commands()):
            skipped.append(f"{doc.name}:{b.line} (needs {SAMPLE})")
            continue
        for c in b.commands():
            text = ports(c.text)
            res = subprocess.run(["bash", "-o", "pipefail", "-c", text], cwd=work, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT_S)
            where = f"{doc.name}:{c.line}: $ {text}"
            if res.returncode != 0:
                failures.append(f"{where}\n  exit {res.returncode}; output:\n{_indent(res.stdout)}")
                break  # later commands of the block depend on this one
            missing = check_output([ports(line) for line in c.shown], res.stdout)
            if missing is not None:
                failures.append(f"{where}\n  shown line not in the output: {missing!r}\n  output:\n{_indent(res.stdout)}")
    shutil.rmtree(work, ignore_errors=True)
    assert not failures, "\n\n".join(failures)
    if skipped:
        pytest.skip("blocks skipped: " + "; ".join(skipped))


def _indent(text: str, limit: int = 60) -> str:
    lines = text.splitlines()
    cut = lines[-limit:]
    return "\n".join(("    " + line) for line in ([f"... ({len(lines) - limit} lines before)"] if len(lines) > limit else []) + cut)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_links_between_docs_point_at_existing_pages_and_headings():
    anchors = {}
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        in_fence, heads = False, set()
        for line in lines:
            if FENCE.match(line):
                in_fence = not in_fence
            elif not in_fence and line.startswith("#"):
                heads.add(_anchor(line.lstrip("#")))
        anchors[doc.resolve()] = heads
    bad = []
    for doc in DOCS:
        for target, anchor in re.findall(r"\]\(([^)\s#]*\.md|)(?:#([^)\s]+))?\)", doc.read_text(encoding="utf-8")):
            page = (doc.parent / target).resolve() if target else doc.resolve()
            if page not in anchors:
                if not page.exists():
                    bad.append(f"{doc.name}: link to missing {target}")
                continue
            if anchor and anchor not in anchors[page]:
                bad.append(f"{doc.name}: link to missing heading {target}#{anchor}")
    assert not bad, "\n".join(bad)
