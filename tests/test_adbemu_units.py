"""The emulated device's parts without a connection: adb message framing and checksums,
shell-v2 and sync frames, the sandbox's path mapping, and the `device` commands' input errors."""

from __future__ import annotations

import os
import struct

import pytest
from click.testing import CliRunner

from amc_tf.cli import main
from amc_tf.benchmarks.adbemu import wire
from amc_tf.benchmarks.adbemu.sandbox import Sandbox

from adb_helpers import recv_from


def test_message_encode_decode_and_checksum():
    msg = wire.Message(wire.A_WRTE, 7, 9, b"hello\xff")
    raw = msg.encode()
    assert len(raw) == 24 + 6
    assert struct.unpack("<6I", raw[:24]) == (wire.A_WRTE, 7, 9, 6, sum(b"hello\xff"), wire.A_WRTE ^ 0xFFFFFFFF)
    assert raw[:4] == b"WRTE"
    back = wire.read_message(recv_from(raw), verify_checksum=True)
    assert (back.command, back.arg0, back.arg1, back.data) == (wire.A_WRTE, 7, 9, b"hello\xff")
    # checksum 0 (peers >= 0x01000001) is accepted only when not verifying
    zero = msg.encode(with_checksum=False)
    assert struct.unpack_from("<I", zero, 16)[0] == 0
    assert wire.read_message(recv_from(zero), verify_checksum=False).data == b"hello\xff"
    with pytest.raises(wire.ProtocolError, match="checksum"):
        wire.read_message(recv_from(zero), verify_checksum=True)


@pytest.mark.parametrize("bad,match", [
    (struct.pack("<6I", wire.A_OKAY, 0, 0, 0, 0, 0), "bad magic"),
    (struct.pack("<6I", 0x41414141, 0, 0, 0, 0, 0x41414141 ^ 0xFFFFFFFF), "unknown command"),
    (struct.pack("<6I", wire.A_WRTE, 0, 0, wire.MAX_PAYLOAD + 1, 0, wire.A_WRTE ^ 0xFFFFFFFF), "exceeds"),
])
def test_bad_headers_are_protocol_errors(bad, match):
    with pytest.raises(wire.ProtocolError, match=match):
        wire.read_message(recv_from(bad), verify_checksum=False)


def test_banner_round_trip():
    banner = wire.device_banner({"ro.product.name": "n", "ro.product.model": "M 1", "ro.product.device": "d",
                                 "other": "x"}, ["shell_v2", "cmd"])
    assert banner == b"device::ro.product.name=n;ro.product.model=M 1;ro.product.device=d;features=shell_v2,cmd"
    kind, props, features = wire.parse_banner(banner + b"\0")
    assert kind == "device" and props["ro.product.model"] == "M 1" and features == {"shell_v2", "cmd"}


def test_shell_v2_packets_survive_any_split():
    stream = (wire.shell_packet(wire.SHELL_STDOUT, b"out") + wire.shell_packet(wire.SHELL_STDERR, b"")
              + wire.shell_packet(wire.SHELL_EXIT, b"\x03"))
    assert stream[:5] == b"\x01\x03\x00\x00\x00"
    dec = wire.ShellDecoder()
    got = [p for i in range(len(stream)) for p in dec.feed(stream[i:i + 1])]
    assert got == [(1, b"out"), (2, b""), (3, b"\x03")] and not dec.buf


@pytest.mark.parametrize("name,expected", [
    ("shell:ls -l", (False, [], "ls -l")),
    ("shell,v2,TERM=xterm,raw:echo a:b", (True, ["TERM=xterm", "raw"], "echo a:b")),
    ("shell,v2,pty:", (True, ["pty"], "")),
    ("sync:", None),
    ("shellfoo", None),
])
def test_shell_service_names(name, expected):
    assert wire.parse_shell_service(name) == expected


def test_sync_frames_survive_any_split():
    payload = (wire.sync_msg(b"SEND", b"/data/x,33188") + wire.sync_msg(b"DATA", b"abc")
               + wire.sync_msg(b"DONE", length=1234567890) + wire.sync_msg(b"QUIT", length=0))
    chunks = [payload[i:i + 3] for i in range(0, len(payload), 3)]
    reader = wire.SyncReader()
    frames = [reader.next_frame(lambda: chunks.pop(0) if chunks else None) for _ in range(5)]
    assert frames == [(b"SEND", 13, b"/data/x,33188"), (b"DATA", 3, b"abc"), (b"DONE", 1234567890, b""),
                      (b"QUIT", 0, b""), None]


# -- sandbox -----------------------------------------------------------------------------
@pytest.mark.parametrize("command,expected", [
    ("ls /data/local/tmp/x", "ls R/data/local/tmp/x"),
    ("cat '/data/local/tmp/a b' \"/sdcard/f\"", "cat 'R/data/local/tmp/a b' \"R/sdcard/f\""),
    ("x=/data/y; echo >/data/z;(cd /data)", "x=R/data/y; echo >R/data/z;(cd R/data)"),
    ("ls /sys/devices /proc/cpuinfo /system/bin", "ls /sys/devices /proc/cpuinfo /system/bin"),
    ("echo foo/data/local /database /data_x", "echo foo/data/local /database /data_x"),
])
def test_shell_rewrite_maps_data_and_sdcard_only(tmp_path, command, expected):
    sb = Sandbox(tmp_path, {})
    assert sb.rewrite(command) == expected.replace("R/", f"{tmp_path.resolve()}/")


def test_sync_paths_map_exactly_and_writes_stay_inside(tmp_path):
    sb = Sandbox(tmp_path, {})
    root = tmp_path.resolve()
    assert sb.host_path("/data/local/tmp/m.tflite", for_write=True) == root / "data/local/tmp/m.tflite"
    assert sb.host_path("/sdcard", for_write=True) == root / "sdcard"
    for escape in ("/data/../etc/passwd", "/system/bin/x", "/data/local/../../../tmp/x"):
        with pytest.raises(PermissionError, match="Read-only"):
            sb.host_path(escape, for_write=True)
    assert str(sb.host_path("/data/../proc/cpuinfo", for_write=False)) == "/proc/cpuinfo"  # reads see the host


@pytest.mark.parametrize("args,msg", [
    (["--root", "a b"], "use a path of letters, digits and ._/+- only"),
    (["--root", "r", "--prop", "novalue"], "--prop wants KEY=VALUE"),
    (["--root", "r", "--adb-keys", "nokeys"], "--adb-keys nokeys: No such file or directory"),
    (["--root", "r", "--adb-keys", "nokeys", "--state", "offline"], "--adb-keys goes with --state device"),
])
def test_emulate_bad_input_is_one_line(tmp_path, monkeypatch, args, msg):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["device", "emulate", "--port", "0", *args])
    assert res.exit_code == 2 and res.stderr.strip().splitlines() == [res.stderr.strip()] and msg in res.stderr


def test_benchmark_binary_written_once(tmp_path):
    out = tmp_path / "bm"
    assert CliRunner().invoke(main, ["device", "benchmark-binary", str(out)]).exit_code == 0
    assert os.access(out, os.X_OK) and "amc_tf.benchmarks.adbemu.host_benchmark_model" in out.read_text()
    res = CliRunner().invoke(main, ["device", "benchmark-binary", str(out)])
    assert res.exit_code == 2 and "exists (use --force" in res.stderr
