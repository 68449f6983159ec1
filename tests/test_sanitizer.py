"""Text from files and file names reaches the terminal only through amc_tf.core.textsafe: escape
sequences, other control characters and newlines are shown escaped, so a crafted name can neither
drive the terminal nor forge an `error:` line."""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from amc_tf.core.textsafe import safe, safe_lines
from cli_run import run

FORGED = "\x1b[31m\x1b]0;owned\x07\nerror: forged by a file name\r"


def _dangerous(ch: str) -> bool:
    o = ord(ch)
    return (o < 0x20 or 0x7F <= o <= 0x9F or 0xD800 <= o <= 0xDFFF
            or o in (0x2028, 0x2029, 0x200E, 0x200F, 0x061C) or 0x202A <= o <= 0x202E or 0x2066 <= o <= 0x2069)


def test_every_control_character_is_escaped_visibly():
    for o in list(range(0x00, 0x20)) + list(range(0x7F, 0xA0)) + [0x2028, 0x2029, 0x202E, 0x2066]:
        out = safe(f"a{chr(o)}b")
        assert out.startswith("a\\") and out.endswith("b") and not any(_dangerous(c) for c in out), (o, out)
    assert safe("\n") == "\\n" and safe("\r") == "\\r" and safe("\t") == "\\t" and safe("\x1b") == "\\x1b"
    assert safe("caf\u00e9 /data/img 01.png") == "caf\u00e9 /data/img 01.png"  # printable text is unchanged
    assert safe("bad\udcff.png") == "bad\\xff.png"  # a file name byte that is not UTF-8


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=60))
def test_no_input_gets_a_control_character_through(text):
    out = safe(text)
    assert not any(_dangerous(c) for c in out)
    lines = safe_lines(text).split("\n")
    assert len(lines) == text.count("\n") + 1 and not any(_dangerous(c) for line in lines for c in line)


def _error_lines(proc) -> list[str]:
    return [line for line in (proc.stderr + proc.stdout).splitlines() if line.startswith("error:")]


def _no_escape(proc) -> None:
    assert "\x1b" not in proc.stderr and "\x1b" not in proc.stdout and "\x07" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_a_file_name_cannot_forge_an_error_line(tmp_path):
    bad = tmp_path / f"m{FORGED}.txt"
    bad.write_bytes(b"\0\1binary")
    proc = run("logs", "parse", bad)
    assert proc.returncode == 2
    _no_escape(proc)
    (line,) = _error_lines(proc)
    assert "\\x1b[31m" in line and "is a binary file" in line


def test_names_in_a_summary_table_are_escaped(tmp_path):
    # a run file's name cannot hold \n (not matched as a log), but it can hold ESC, \r and NEL (U+0085)
    (tmp_path / "m\x1b[31m\x85error: forged\r_run1.txt").write_text("STARTING!\nERROR: Failed to apply \x1b[2J delegate\nBenchmarking failed.\n")
    for fmt in ([], ["--markdown"], ["--csv"]):
        proc = run("logs", "summarize", tmp_path, *fmt)
        assert proc.returncode == 3, proc.stderr
        _no_escape(proc)
        assert len(_error_lines(proc)) == 1 and _error_lines(proc)[0].startswith("error: incomplete: m\\x1b[31m")
        assert "\\x1b[31m" in proc.stdout


def test_progress_lines_and_the_error_line_of_convert_are_escaped(tmp_path):
    ckpt = tmp_path / f"ck{FORGED}.pth"
    ckpt.write_bytes(b"not a checkpoint at all")
    proc = run("convert", ckpt, "-o", tmp_path / "out")
    assert proc.returncode == 2
    _no_escape(proc)
    assert len(_error_lines(proc)) == 1
    assert any(line.startswith("amc-tf: reading ") and "\\nerror: forged" in line for line in proc.stderr.splitlines())


def test_an_onnx_node_name_is_escaped_in_the_error_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Hardmax", ["x"], ["y"], name=f"node{FORGED}")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    proc = run("convert", path, "-o", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    _no_escape(proc)
    (line,) = _error_lines(proc)
    assert "node\\x1b[31m\\x1b]0;owned\\x07" in line, line


def test_the_boundary_escapes_messages_it_did_not_compose(tmp_path):
    code = ("from amc_tf.cli.app import run_guarded\n"
            "from amc_tf.core.errors import AmcError\n"
            "def boom(): raise AmcError('x\\x1b[2Jy\\x9bz')\n"
            "raise SystemExit(run_guarded(boom))\n")
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "error: x\\x1b[2Jy\\x9bz\n"
