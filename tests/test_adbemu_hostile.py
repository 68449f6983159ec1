"""The emulated device against a hostile host and a hostile file system, spoken to in raw adb
protocol: a --root made of planted symlinks is refused; sync never creates a link nor writes
through one; a NUL byte in a sync path is a FAIL answer, not a traceback; a process that never
reads its stdin holds a bounded buffer, not what the host sends (flow control as adbd's);
idle unauthenticated connections are closed; connections and streams are limited; accept()
failing with EMFILE does not end the server. The emulator runs as a real subprocess."""

from __future__ import annotations

import os
import re
import resource
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from amc_tf.benchmarks.adbemu import wire

from test_adb_emulator import Host

AMC_TF = [sys.executable, "-c", "from amc_tf.cli import main; main()"]
MiB = 1 << 20


class Emu:
    """`amc-tf device emulate` (not quiet) with its log in a file, so a chatty device never blocks."""

    def __init__(self, root: Path, *options: str):
        self.log = root.parent / f"{root.name}.log"
        self.fh = open(self.log, "w")
        self.proc = subprocess.Popen([*AMC_TF, "device", "emulate", "--port", "0", "--root", str(root),
                                      "--max-seconds", "300", *options], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.fh)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log.read_text())
            if m:
                self.port = int(m.group(1))
                return
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.05)
        raise AssertionError("the emulator did not start")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.fh.close()
        return self.text()


@pytest.fixture
def emu(tmp_path):
    started = []

    def start(*options, root=None):
        e = Emu(root or tmp_path / f"root{len(started)}", *options)
        started.append(e)
        return e

    yield start
    for e in started:
        log = e.stop()
        assert "Traceback" not in log, log[-3000:]


def sync_stream(host: Host):
    local, okay = host.open("sync:")
    assert okay.command == wire.A_OKAY
    return local, okay.arg0


def sync_request(host: Host, local: int, remote: int, payload: bytes) -> bytes:
    """Send sync frames in one WRTE; return the device's answer (its WRTEs, acknowledged) up to a
    complete answer frame (OKAY/FAIL with its message, or STAT)."""
    host.send(wire.A_WRTE, local, remote, payload)
    answer = bytearray()
    while True:
        msg = host.recv()
        if msg.command == wire.A_OKAY:
            continue  # our WRTE acknowledged
        assert msg.command == wire.A_WRTE, (msg.name, bytes(answer))
        host.send(wire.A_OKAY, local, remote)
        answer += msg.data
        ident = bytes(answer[:4])
        if ident == b"STAT" and len(answer) >= 16:
            return bytes(answer)
        if ident in (b"OKAY", b"FAIL") and len(answer) >= 8:
            n = int.from_bytes(answer[4:8], "little")
            if len(answer) >= 8 + n:
                return bytes(answer)


def send_file(path: str, mode: int, data: bytes) -> bytes:
    return (wire.sync_msg(b"SEND", f"{path},{mode}".encode()) + wire.sync_msg(b"DATA", data)
            + wire.sync_msg(b"DONE", length=1_700_000_000))


# -- the root -----------------------------------------------------------------------------
def test_a_root_made_of_planted_symlinks_is_refused_and_nothing_is_written_outside(tmp_path):
    outside = tmp_path / "outside"
    for sub in ("data", "sdcard", "system"):
        (outside / sub).mkdir(parents=True)
    root = tmp_path / "root"
    root.mkdir()
    (root / ".amc-tf-emulator-root").symlink_to(outside / "marker")
    for sub in ("data", "sdcard", "system"):
        (root / sub).symlink_to(outside / sub)
    link_root = tmp_path / "link-root"
    link_root.symlink_to(outside)
    for given, message in ((root, "is a symbolic link, not what the emulator made"),
                           (link_root, "is a symbolic link; give the real directory")):
        res = subprocess.run([*AMC_TF, "device", "emulate", "--port", "0", "--root", str(given), "-q",
                              "--max-seconds", "1"], capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: --root {given}") and message in lines[0], lines
    found = sorted(str(p.relative_to(outside)) for p in outside.rglob("*"))
    assert found == ["data", "sdcard", "system"]  # no marker, no system/bin/getprop written through the links


def test_a_marker_that_is_a_hard_link_or_a_folder_is_not_a_marker(tmp_path):
    from amc_tf.benchmarks.adbemu.sandbox import check_root
    from amc_tf.core.errors import AmcError

    victim = tmp_path / "victim"
    victim.write_text("keep")
    root = tmp_path / "root"
    root.mkdir()
    os.link(victim, root / ".amc-tf-emulator-root")
    with pytest.raises(AmcError, match="not a marker this emulator wrote"):
        check_root(str(root))
    assert victim.read_text() == "keep"


# -- sync ---------------------------------------------------------------------------------
def test_sync_never_creates_a_link_nor_writes_through_one(emu, tmp_path):
    dev = emu()
    root = tmp_path / "root0"
    outside = tmp_path / "outside"
    outside.mkdir()
    host = Host(dev.port)
    host.connect()
    local, remote = sync_stream(host)
    # a link by SEND mode S_IFLNK: refused, nothing created
    answer = sync_request(host, local, remote, send_file("/data/local/tmp/esc", stat.S_IFLNK | 0o777,
                                                         str(outside).encode()))
    assert answer.startswith(b"FAIL") and b"symbolic links are not supported" in answer, answer
    assert not os.path.lexists(root / "data/local/tmp/esc")
    # links planted in the root by someone else: a folder link on the way, and a link as the file itself
    (root / "data/local/tmp/dir").symlink_to(outside)
    (outside / "target").write_text("keep")
    (root / "data/local/tmp/file").symlink_to(outside / "target")
    answer = sync_request(host, local, remote, send_file("/data/local/tmp/dir/x.bin", 0o100644, b"payload"))
    assert answer.startswith(b"FAIL") and b"symbolic link" in answer, answer
    answer = sync_request(host, local, remote, send_file("/data/local/tmp/file", 0o100644, b"payload"))
    assert answer == wire.sync_msg(b"OKAY", length=0)  # the link itself is replaced by the file
    assert (root / "data/local/tmp/file").read_bytes() == b"payload" and not (root / "data/local/tmp/file").is_symlink()
    assert sorted(p.name for p in outside.iterdir()) == ["target"] and (outside / "target").read_text() == "keep"
    # a normal push still works, mode and all
    answer = sync_request(host, local, remote, send_file("/data/local/tmp/new/m.bin", 0o100755, b"abc"))
    assert answer == wire.sync_msg(b"OKAY", length=0)
    assert (root / "data/local/tmp/new/m.bin").read_bytes() == b"abc"
    assert stat.S_IMODE((root / "data/local/tmp/new/m.bin").stat().st_mode) == 0o755


def test_a_nul_byte_in_a_sync_path_is_a_fail_answer_not_a_traceback(emu, tmp_path):
    dev = emu()
    host = Host(dev.port)
    host.connect()
    local, remote = sync_stream(host)
    for request in (wire.sync_msg(b"STAT", b"/data/local/tmp/a\0b"), wire.sync_msg(b"LIST", b"/data\0"),
                    wire.sync_msg(b"RECV", b"/sdcard/\0x"), send_file("/data/local/tmp/a\0b", 0o100644, b"x")):
        answer = sync_request(host, local, remote, request)
        assert answer.startswith(b"FAIL") and b"NUL" in answer, (request[:4], answer)
    # the stream still answers afterwards
    answer = sync_request(host, local, remote, wire.sync_msg(b"STAT", b"/data/local/tmp"))
    assert answer[:4] == b"STAT" and stat.S_ISDIR(int.from_bytes(answer[4:8], "little"))
    assert "Traceback" not in dev.text()


# -- flow control -------------------------------------------------------------------------
def test_a_process_that_never_reads_stdin_holds_a_bounded_buffer(emu):
    dev = emu()
    host = Host(dev.port, timeout=30)
    host.connect()
    local, okay = host.open("shell,v2,raw:sleep 60")
    remote = okay.arg0
    time.sleep(0.5)
    base = dev.rss_mib()
    chunk = wire.shell_packet(wire.SHELL_STDIN, bytes(wire.MAX_PAYLOAD - 5))
    acked = 0
    host.sock.settimeout(2.0)
    for _ in range(64):  # up to 64 MiB, each WRTE sent only after the last one's OKAY, as adb does
        host.send(wire.A_WRTE, local, remote, chunk)
        try:
            msg = host.recv()
        except socket.timeout:
            break
        assert msg.command == wire.A_OKAY and msg.arg1 == local, msg.name
        acked += len(chunk)
    grown = dev.rss_mib() - base
    print(f"\n[figure] the device acknowledged {acked / MiB:.1f} MiB to a process that never reads, then "
          f"withheld its OKAY; its RSS grew {grown:.1f} MiB")
    assert acked <= 3 * MiB  # 1 MiB of buffer, the pipe's 64 KiB, the chunk in hand
    assert grown < 40
    # a host that ignores flow control (WRTE after WRTE without waiting) gets its stream closed
    host.sock.settimeout(30)
    for _ in range(8):
        host.send(wire.A_WRTE, local, remote, chunk)
    seen = set()
    while wire.A_CLSE not in seen:
        seen.add(host.recv().command)
    grown = dev.rss_mib() - base
    print(f"[figure] after 8 MiB more sent without waiting: stream closed, RSS grew {grown:.1f} MiB")
    assert grown < 40
    assert "WRTE before the OKAY of the last one; closing it" in dev.text()


def _sleepers(seconds: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == f"sleep\0{seconds}\0".encode():
                found.append(int(pid))
        except OSError:
            pass
    return found


def test_a_host_hanging_up_on_a_stuck_process_ends_it(emu):
    dev = emu()
    host = Host(dev.port, timeout=30)
    host.connect()
    local, okay = host.open("shell,v2,raw:sleep 61")
    chunk = wire.shell_packet(wire.SHELL_STDIN, bytes(wire.MAX_PAYLOAD - 5))
    host.sock.settimeout(2.0)
    while True:  # fill its buffer until the device withholds the OKAY
        host.send(wire.A_WRTE, local, okay.arg0, chunk)
        try:
            assert host.recv().command == wire.A_OKAY
        except socket.timeout:
            break
    assert _sleepers("61")
    host.send(wire.A_CLSE, local, okay.arg0)
    deadline = time.monotonic() + 10
    while _sleepers("61") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _sleepers("61")  # SIGHUP, as adbd sends it, not left to sleep with 1 MiB held


# -- connections --------------------------------------------------------------------------
def test_an_idle_unauthenticated_connection_is_closed_an_online_one_is_not(emu):
    dev = emu("--handshake-timeout", "1")
    idle = socket.create_connection(("127.0.0.1", dev.port), timeout=10)
    online = Host(dev.port)
    online.connect()
    t0 = time.monotonic()
    assert idle.recv(1) == b""  # closed by the device
    waited = time.monotonic() - t0
    print(f"\n[figure] an idle connection was closed after {waited:.1f} s (--handshake-timeout 1)")
    assert 0.5 < waited < 5
    time.sleep(0.5)
    local, okay = online.open("shell:echo still")
    assert okay.command == wire.A_OKAY and online.collect(local, okay.arg0) == b"still\r\n"
    assert "not online after 1 s" in dev.text()


def test_connections_and_streams_are_limited(emu):
    dev = emu()
    hosts = [Host(dev.port) for _ in range(16)]
    for h in hosts:
        assert h.connect().command == wire.A_CNXN
    extra = socket.create_connection(("127.0.0.1", dev.port), timeout=10)
    assert extra.recv(1) == b""  # the 17th is refused
    hosts.pop().sock.close()
    time.sleep(0.3)
    again = Host(dev.port)
    assert again.connect().command == wire.A_CNXN  # room again after one left
    for _ in range(32):
        assert sync_stream(again)[0]
    _, reply = again.open("sync:")
    assert reply.command == wire.A_CLSE  # the 33rd stream on one connection
    assert "refused a connection" in dev.text() and "refused a stream: 32 are open" in dev.text()


def test_accept_failing_with_emfile_does_not_end_the_server(emu):
    dev = emu()
    pid = dev.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    open_fds = len(os.listdir(f"/proc/{pid}/fd"))
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds + 2, hard))
    socks = [socket.create_connection(("127.0.0.1", dev.port), timeout=10) for _ in range(6)]
    deadline = time.monotonic() + 10
    while "accept failed" not in dev.text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "accept failed (Too many open files)" in dev.text()
    for s in socks:
        s.close()
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    host = Host(dev.port)
    assert host.connect().command == wire.A_CNXN  # the server went on
    assert dev.proc.poll() is None and "--max-seconds" not in dev.text()


# -- the acknowledgement rule itself, in-process with small budgets --------------------------
def test_okay_waits_for_room_in_the_stream_and_in_the_device(tmp_path, monkeypatch):
    from amc_tf.benchmarks.adbemu import device as devmod
    from amc_tf.benchmarks.adbemu.sandbox import Sandbox

    monkeypatch.setattr(devmod, "STREAM_BUFFER", 100)
    monkeypatch.setattr(devmod, "DEVICE_BUFFER", 150)
    dev = devmod.EmulatedDevice(Sandbox(tmp_path / "r", {}), port=0)
    try:
        sent = []
        conn = devmod.Connection(None, dev)
        conn.send = lambda msg: sent.append((msg.name, msg.arg0)) or True
        a, b, c = (devmod.Stream(conn, k, 10 + k) for k in (1, 2, 3))
        a.deliver(b"a" * 60)
        a.deliver(b"a" * 60)  # 120 > 100 unread in the stream: no OKAY
        b.deliver(b"b" * 50)  # 170 > 150 in the device: no OKAY
        c.deliver(b"c" * 10)
        assert sent == [("OKAY", 1)] and a.ack_owed and b.ack_owed and c.ack_owed
        assert c.read() == b"c" * 10  # c has room now, the device not (170): c waits for others to read
        assert sent == [("OKAY", 1)] and dev.buffered == 170
        assert a.read() == b"a" * 60  # the device holds 110: b then c (oldest first) get their OKAY, a (60 > 50 unread) not yet
        assert sent == [("OKAY", 1), ("OKAY", 2), ("OKAY", 3)]
        assert a.read() == b"a" * 60
        assert sent[-1] == ("OKAY", 1) and not dev.owed
        a.deliver(b"a" * 101)
        a.deliver(b"a")  # another WRTE before the OKAY of the last: the stream is closed, its data freed
        assert sent[-1] == ("CLSE", 1) and dev.buffered == 50
    finally:
        dev.stop()
