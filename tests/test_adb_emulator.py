"""The emulated device at the protocol level, without adb: the handshake, streams with flow
control, shell v1/v2, sync, auth refusal (message framing, the sandbox's path mapping and the
`device` commands' input errors: tests/test_adbemu_units.py)."""

from __future__ import annotations

import base64
import os
import socket
import stat
import struct
import time

import pytest

from amc_tf.benchmarks.adbemu import auth, wire
from amc_tf.benchmarks.adbemu.device import EmulatedDevice
from amc_tf.benchmarks.adbemu.sandbox import Sandbox, default_props

from adb_helpers import recv_from


# -- a minimal host speaking the transport ---------------------------------------------------
class Host:
    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.next_id = 100
        self._recv_exact = wire.socket_reader(self.sock)

    def send(self, command, arg0, arg1, data=b"", checksum=True):
        self.sock.sendall(wire.Message(command, arg0, arg1, data).encode(with_checksum=checksum))

    def recv(self, raw=False):
        header = self._recv_exact(24)
        msg = wire.read_message(recv_from(header + self._recv_exact(struct.unpack_from("<I", header, 12)[0])),
                                verify_checksum=False)
        return (msg, struct.unpack_from("<I", header, 16)[0]) if raw else msg

    def connect(self, version=wire.A_VERSION, maxdata=wire.MAX_PAYLOAD):
        self.send(wire.A_CNXN, version, maxdata, b"host::features=shell_v2,cmd\0")
        return self.recv()

    def open(self, name):
        self.next_id += 1
        self.send(wire.A_OPEN, self.next_id, 0, name.encode() + b"\0")
        reply = self.recv()
        return self.next_id, reply

    def collect(self, local, remote):
        """Everything the device writes on the stream until its CLSE (each WRTE acknowledged)."""
        out = bytearray()
        while True:
            msg = self.recv()
            if msg.command == wire.A_CLSE:
                return bytes(out)
            assert msg.command == wire.A_WRTE and msg.arg1 == local
            out += msg.data
            self.send(wire.A_OKAY, local, remote)


@pytest.fixture
def device(tmp_path):
    devs = []

    def start(**kw):
        sb = Sandbox(tmp_path / "root", default_props(secure=kw.get("state") == "unauthorized" or "adb_keys" in kw))
        sb.prepare()
        dev = EmulatedDevice(sb, port=0, **kw).start()
        devs.append(dev)
        return dev

    yield start
    for d in devs:
        d.stop()


@pytest.mark.parametrize("version,checksummed", [(0x01000000, True), (0x01000001, False)])
def test_handshake_and_checksum_rule(device, version, checksummed):
    dev = device()
    assert dev.listener.getsockname()[0] == "127.0.0.1"
    host = Host(dev.port)
    cnxn = host.connect(version=version, maxdata=4096)
    assert (cnxn.command, cnxn.arg0, cnxn.arg1) == (wire.A_CNXN, wire.A_VERSION, wire.MAX_PAYLOAD)
    kind, props, features = wire.parse_banner(cnxn.data)
    assert kind == "device" and props["ro.product.model"] == "amc-tf emulated device (host CPU)"
    assert {"shell_v2", "cmd"} <= features
    local, okay = host.open("shell:printf abc")
    assert okay.command == wire.A_OKAY and okay.arg1 == local
    msg, crc = host.recv(raw=True)
    assert msg.data == b"abc" and crc == (sum(b"abc") if checksummed else 0)


def test_shell_v2_separates_streams_and_reports_exit(device):
    host = Host(device().port)
    host.connect()
    local, okay = host.open("shell,v2,raw:echo out; echo err >&2; getprop ro.build.version.sdk; exit 3")
    packets = wire.ShellDecoder().feed(host.collect(local, okay.arg0))
    by_kind = {}
    for kind, data in packets:
        by_kind[kind] = by_kind.get(kind, b"") + data
    assert by_kind == {wire.SHELL_STDOUT: b"out\n29\n", wire.SHELL_STDERR: b"err\n", wire.SHELL_EXIT: b"\x03"}
    assert packets[-1] == (wire.SHELL_EXIT, b"\x03")


def test_shell_v2_stdin_and_close_stdin(device):
    host = Host(device().port)
    host.connect()
    local, okay = host.open("shell,v2,raw:tr a-z A-Z")
    host.send(wire.A_WRTE, local, okay.arg0, wire.shell_packet(wire.SHELL_STDIN, b"hello")
              + wire.shell_packet(wire.SHELL_CLOSE_STDIN, b""))
    assert host.recv().command == wire.A_OKAY  # our WRTE acknowledged
    packets = wire.ShellDecoder().feed(host.collect(local, okay.arg0))
    assert packets == [(wire.SHELL_STDOUT, b"HELLO"), (wire.SHELL_EXIT, b"\x00")]


def test_legacy_shell_merges_output_has_no_exit_status_and_pty_line_ends(device):
    host = Host(device(shell_v2=False).port)
    _, _, features = wire.parse_banner(host.connect().data)
    assert "shell_v2" not in features
    local, okay = host.open("shell,v2,raw:true")
    assert okay.command == wire.A_CLSE  # v2 not offered, so refused
    local, okay = host.open("shell:echo out; echo err >&2; exit 9")
    assert host.collect(local, okay.arg0) == b"out\r\nerr\r\n"  # as through old adbd's pty
    local, okay = host.open("exec:printf 'a\\nb'")
    assert host.collect(local, okay.arg0) == b"a\nb"  # exec-out: raw bytes


def test_flow_control_one_write_in_flight(device):
    host = Host(device().port)
    host.connect(maxdata=4096)
    local, okay = host.open("shell:head -c 10000 /dev/zero")
    first = host.recv()
    assert first.command == wire.A_WRTE and len(first.data) <= 4096
    host.sock.settimeout(0.3)
    with pytest.raises(socket.timeout):
        host.recv()  # nothing more until we acknowledge
    host.sock.settimeout(10)
    host.send(wire.A_OKAY, local, okay.arg0)
    rest = host.collect(local, okay.arg0)
    assert len(first.data) + len(rest) == 10000


def test_host_hangup_ends_the_session(device, tmp_path):
    dev = device()
    host = Host(dev.port)
    host.connect()
    local, okay = host.open("shell,v2,raw:echo $$ > /data/local/tmp/pid; exec sleep 30")
    pidfile = tmp_path / "root/data/local/tmp/pid"
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    host.send(wire.A_CLSE, local, okay.arg0)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the shell outlived its stream")


def test_sync_send_stat_recv_list_and_readonly(device, tmp_path):
    host = Host(device().port)
    host.connect()
    local, okay = host.open("sync:")
    remote = okay.arg0
    data = os.urandom(150_000)

    def write(payload):
        host.send(wire.A_WRTE, local, remote, payload)
        assert host.recv().command == wire.A_OKAY

    pending = bytearray()

    def read_reply(n):
        while len(pending) < n:
            msg = host.recv()
            assert msg.command == wire.A_WRTE
            pending.extend(msg.data)
            host.send(wire.A_OKAY, local, remote)
        out = bytes(pending[:n])
        del pending[:n]
        return out

    write(wire.sync_msg(b"SEND", b"/data/local/tmp/new dir/f x,33261") + wire.sync_msg(b"DATA", data[:65536]))
    write(wire.sync_msg(b"DATA", data[65536:131072]) + wire.sync_msg(b"DATA", data[131072:]))
    write(wire.sync_msg(b"DONE", length=1_700_000_000))
    assert read_reply(8) == b"OKAY\0\0\0\0"
    host_file = tmp_path / "root/data/local/tmp/new dir/f x"
    assert host_file.read_bytes() == data and stat.S_IMODE(host_file.stat().st_mode) == 0o755
    assert int(host_file.stat().st_mtime) == 1_700_000_000

    write(wire.sync_msg(b"STAT", b"/data/local/tmp/new dir/f x"))
    assert read_reply(16) == wire.sync_stat(host_file.stat().st_mode, len(data), 1_700_000_000)
    write(wire.sync_msg(b"STAT", b"/data/nope"))
    assert read_reply(16) == b"STAT" + bytes(12)

    write(wire.sync_msg(b"RECV", b"/data/local/tmp/new dir/f x"))
    got = bytearray()
    while True:
        ident, n = struct.unpack("<4sI", read_reply(8))
        if ident == b"DONE":
            break
        assert ident == b"DATA" and n <= wire.SYNC_DATA_MAX
        got += read_reply(n)
    assert bytes(got) == data

    write(wire.sync_msg(b"LIST", b"/data/local/tmp/new dir"))
    names = []
    while True:
        head = read_reply(20)
        if head == wire.SYNC_DENT_DONE:
            break
        assert head[:4] == b"DENT"
        names.append(read_reply(struct.unpack_from("<I", head, 16)[0]))
    assert names == [b".", b"..", b"f x"]

    write(wire.sync_msg(b"SEND", b"/system/bin/evil,33188") + wire.sync_msg(b"DATA", b"x")
          + wire.sync_msg(b"DONE", length=0))
    reply = read_reply(8)
    assert reply[:4] == b"FAIL"
    assert read_reply(struct.unpack_from("<I", reply, 4)[0]) == b"couldn't create file: Read-only file system"
    write(wire.sync_msg(b"QUIT", length=0))
    assert host.recv().command == wire.A_CLSE


def test_unknown_services_are_refused(device):
    host = Host(device().port)
    host.connect()
    for name in ("reboot:", "root:", "tcpip:5555", "jdwp:1"):
        _, reply = host.open(name)
        assert (reply.command, reply.arg0) == (wire.A_CLSE, 0)


def test_unauthorized_device_never_accepts_a_key(device):
    host = Host(device(state="unauthorized").port)
    first = host.connect()
    assert (first.command, first.arg0, len(first.data)) == (wire.A_AUTH, wire.AUTH_TOKEN, wire.TOKEN_SIZE)
    host.send(wire.A_AUTH, wire.AUTH_SIGNATURE, 0, os.urandom(256))
    again, crc = host.recv(raw=True)
    assert (again.command, again.arg0) == (wire.A_AUTH, wire.AUTH_TOKEN) and again.data != first.data
    assert crc == sum(again.data)  # before our CNXN the host cannot know it may skip checksums
    host.send(wire.A_AUTH, wire.AUTH_RSAPUBLICKEY, 0, b"QAAAA... user@host\0")
    host.send(wire.A_OPEN, 1, 0, b"shell:id\0")  # not online: ignored
    host.sock.settimeout(0.5)
    with pytest.raises(socket.timeout):
        host.recv()


def test_offline_device_stays_silent(device):
    host = Host(device(state="offline").port)
    host.sock.settimeout(0.5)
    with pytest.raises(socket.timeout):
        host.connect()


# -- RSA authentication ----------------------------------------------------------------------
def _prime(bits, rng):
    while True:
        c = rng.getrandbits(bits) | (1 << (bits - 1)) | 1
        if all(pow(a, c - 1, c) == 1 for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)):
            return c


@pytest.fixture(scope="module")
def rsa_key():
    """A 768-bit RSA key made here, with its adbkey.pub line (libmincrypt layout)."""
    import random

    rng = random.Random(15)
    e = 65537
    while True:
        p, q = _prime(384, rng), _prime(384, rng)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e:
            break
    n, words = p * q, 24
    n0inv = (-pow(n, -1, 1 << 32)) % (1 << 32)
    rr = pow(2, 2 * 32 * words, n)
    blob = (struct.pack("<II", words, n0inv) + n.to_bytes(4 * words, "little") + rr.to_bytes(4 * words, "little")
            + struct.pack("<I", e))
    return n, pow(e, -1, phi), base64.b64encode(blob).decode() + " tester@host"


def _sign(n, d, token):
    k = (n.bit_length() + 7) // 8
    suffix = b"\x00" + auth.SHA1_DIGEST_INFO + token
    em = b"\x00\x01" + b"\xff" * (k - 2 - len(suffix)) + suffix
    return pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")


def test_adb_pubkey_parse_and_signature_check(rsa_key):
    n, d, line = rsa_key
    key = auth.parse_adb_pubkey(line)
    assert (key.n, key.e, key.comment) == (n, 65537, "tester@host")
    token = os.urandom(20)
    sig = _sign(n, d, token)
    assert auth.verify(key, token, sig)
    assert not auth.verify(key, os.urandom(20), sig)  # another token
    assert not auth.verify(key, token, sig[:-1] + bytes([sig[-1] ^ 1]))  # a flipped bit
    assert not auth.verify(key, token, sig[1:])  # wrong length
    for bad in ("not-base64!", base64.b64encode(b"short").decode(), base64.b64encode(bytes(100)).decode()):
        with pytest.raises(ValueError):
            auth.parse_adb_pubkey(bad)


def test_device_with_adb_keys_goes_online_only_for_a_valid_signature(device, rsa_key):
    n, d, line = rsa_key
    host = Host(device(adb_keys=[auth.parse_adb_pubkey(line)]).port)
    token = host.connect()
    assert (token.command, token.arg0) == (wire.A_AUTH, wire.AUTH_TOKEN)
    host.send(wire.A_AUTH, wire.AUTH_SIGNATURE, 0, _sign(n, d, os.urandom(20)))  # signs the wrong token
    again = host.recv()
    assert (again.command, again.arg0) == (wire.A_AUTH, wire.AUTH_TOKEN)
    host.send(wire.A_AUTH, wire.AUTH_SIGNATURE, 0, _sign(n, d, again.data))
    cnxn = host.recv()
    assert cnxn.command == wire.A_CNXN and wire.parse_banner(cnxn.data)[0] == "device"


def test_emulate_stops_by_itself_after_max_seconds(tmp_path):
    import subprocess
    import sys

    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", "from amc_tf.cli import main; main()", "device", "emulate", "--port",
                           "0", "--root", str(tmp_path / "r"), "--max-seconds", "1"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and time.monotonic() - t0 < 30
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("emulated Android device listening on 127.0.0.1:") and lines[-1] == \
        "stopped after 1s (--max-seconds)"
    assert (tmp_path / "r/system/bin/getprop").is_file() and (tmp_path / "r/data/local/tmp").is_dir()
