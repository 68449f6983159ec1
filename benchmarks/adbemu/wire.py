"""adb's wire formats, as the device side sees them (facts from AOSP's protocol.txt,
SYNC.TXT and shell_protocol.h; the code is this project's own).

- Transport messages: a 24-byte header of six little-endian uint32 (command, arg0, arg1,
  payload length, payload checksum, magic = command ^ 0xffffffff) and the payload.
  The checksum is the byte sum of the payload; peers at version >= 0x01000001 neither
  need nor check it (they send 0).
- Shell protocol v2 packets inside a stream: 1 id byte, a uint32 LE length, the data.
- Sync requests/responses inside a `sync:` stream: a 4-byte ASCII id and a uint32 LE
  length (for SEND's DONE, the mtime), then that many bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

A_SYNC, A_CNXN, A_OPEN, A_OKAY = 0x434E5953, 0x4E584E43, 0x4E45504F, 0x59414B4F
A_CLSE, A_WRTE, A_AUTH, A_STLS = 0x45534C43, 0x45545257, 0x48545541, 0x534C5453
COMMANDS = {A_SYNC: "SYNC", A_CNXN: "CNXN", A_OPEN: "OPEN", A_OKAY: "OKAY", A_CLSE: "CLSE",
            A_WRTE: "WRTE", A_AUTH: "AUTH", A_STLS: "STLS"}

A_VERSION_MIN = 0x01000000
A_VERSION_SKIP_CHECKSUM = 0x01000001
A_VERSION = 0x01000001
MAX_PAYLOAD = 1024 * 1024
MAX_PAYLOAD_V1 = 4096

AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
TOKEN_SIZE = 20

HEADER = struct.Struct("<6I")


class ProtocolError(Exception):
    """The peer sent something that is not adb: the connection must be closed."""


def checksum(data: bytes) -> int:
    return sum(data) & 0xFFFFFFFF


@dataclass
class Message:
    command: int
    arg0: int
    arg1: int
    data: bytes = b""

    @property
    def name(self) -> str:
        return COMMANDS.get(self.command, f"0x{self.command:08x}")

    def encode(self, with_checksum: bool = True) -> bytes:
        crc = checksum(self.data) if with_checksum else 0
        return HEADER.pack(self.command, self.arg0 & 0xFFFFFFFF, self.arg1 & 0xFFFFFFFF, len(self.data), crc,
                           self.command ^ 0xFFFFFFFF) + self.data


def decode_header(raw: bytes) -> tuple[int, int, int, int, int]:
    """(command, arg0, arg1, length, checksum) of a 24-byte header; ProtocolError if it is not one."""
    if len(raw) != HEADER.size:
        raise ProtocolError(f"short header ({len(raw)} bytes)")
    command, arg0, arg1, length, crc, magic = HEADER.unpack(raw)
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic 0x{magic:08x} for command 0x{command:08x}")
    if command not in COMMANDS:
        raise ProtocolError(f"unknown command 0x{command:08x}")
    if length > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {length} bytes exceeds {MAX_PAYLOAD}")
    return command, arg0, arg1, length, crc


def socket_reader(sock):
    """`recv_exact(n) -> bytes` over a socket: exactly n bytes, EOFError when the peer hangs up first."""

    def recv_exact(n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return bytes(buf)

    return recv_exact


def read_message(recv_exact, verify_checksum: bool) -> Message:
    """One message from `recv_exact(n) -> bytes` (which raises EOFError at end of stream)."""
    command, arg0, arg1, length, crc = decode_header(recv_exact(HEADER.size))
    data = recv_exact(length) if length else b""
    # a CNXN with checksum 0 is fine: a host that knew this device at >= A_VERSION_SKIP_CHECKSUM
    # (adb's reconnect after a device restart) skips the checksum before it learns our version again
    if verify_checksum and checksum(data) != crc and not (command == A_CNXN and crc == 0):
        raise ProtocolError(f"{COMMANDS[command]} payload checksum {checksum(data)} != header's {crc}")
    return Message(command, arg0, arg1, data)


def parse_banner(data: bytes) -> tuple[str, dict[str, str], set[str]]:
    """`system-type:serial:k=v;k=v;features=a,b` -> (system-type, properties, features)."""
    text = data.rstrip(b"\0").decode("utf-8", errors="replace")
    kind, _, rest = text.partition(":")
    _, _, props_text = rest.partition(":")
    props, features = {}, set()
    for item in filter(None, props_text.split(";")):
        key, _, val = item.partition("=")
        if key == "features":
            features = set(filter(None, val.split(",")))
        else:
            props[key] = val
    return kind, props, features


def device_banner(props: dict[str, str], features: list[str]) -> bytes:
    keys = ("ro.product.name", "ro.product.model", "ro.product.device")
    fields = [f"{k}={props[k]}" for k in keys if k in props] + ["features=" + ",".join(features)]
    return ("device::" + ";".join(fields)).encode()


# -- shell protocol v2 ----------------------------------------------------------------
SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN, SHELL_WINDOW = 0, 1, 2, 3, 4, 5
SHELL_HEADER = struct.Struct("<BI")


def shell_packet(kind: int, data: bytes) -> bytes:
    return SHELL_HEADER.pack(kind, len(data)) + data


class ShellDecoder:
    """Reassembles shell v2 packets from stream chunks cut anywhere."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        self.buf += chunk
        out = []
        while len(self.buf) >= SHELL_HEADER.size:
            kind, length = SHELL_HEADER.unpack_from(self.buf)
            if len(self.buf) < SHELL_HEADER.size + length:
                break
            out.append((kind, bytes(self.buf[SHELL_HEADER.size:SHELL_HEADER.size + length])))
            del self.buf[:SHELL_HEADER.size + length]
        return out


def parse_shell_service(name: str) -> tuple[bool, list[str], str] | None:
    """`shell:CMD` -> (False, [], CMD); `shell,v2,raw,TERM=x:CMD` -> (True, ['raw', 'TERM=x'], CMD)."""
    head, sep, command = name.partition(":")
    if not sep:
        return None
    parts = head.split(",")
    if parts[0] != "shell":
        return None
    args = parts[1:]
    v2 = "v2" in args
    return v2, [a for a in args if a and a != "v2"], command


# -- sync ------------------------------------------------------------------------------
SYNC_DATA_MAX = 64 * 1024
SYNC_HEADER = struct.Struct("<4sI")
SYNC_REQUESTS = (b"STAT", b"LIST", b"SEND", b"RECV", b"QUIT")


def sync_msg(ident: bytes, payload: bytes = b"", length: int | None = None) -> bytes:
    return SYNC_HEADER.pack(ident, len(payload) if length is None else length) + payload


def sync_stat(mode: int, size: int, mtime: int) -> bytes:
    return b"STAT" + struct.pack("<3I", mode & 0xFFFFFFFF, size & 0xFFFFFFFF, mtime & 0xFFFFFFFF)


def sync_dent(mode: int, size: int, mtime: int, name: bytes) -> bytes:
    return b"DENT" + struct.pack("<4I", mode & 0xFFFFFFFF, size & 0xFFFFFFFF, mtime & 0xFFFFFFFF, len(name)) + name


SYNC_DENT_DONE = b"DONE" + bytes(16)


class SyncReader:
    """Pulls sync frames out of a stream's byte chunks, however they were cut.
    `next_frame(get_chunk)` blocks on `get_chunk() -> bytes | None` (None: the stream
    closed) and returns (id, length, payload), or None at the end. DONE and QUIT carry no
    payload (in SEND, DONE's length field is the file's mtime)."""

    NO_PAYLOAD = (b"DONE", b"QUIT")

    def __init__(self):
        self.buf = bytearray()

    def _need(self, n: int, get_chunk) -> bool:
        while len(self.buf) < n:
            chunk = get_chunk()
            if chunk is None:
                return False
            self.buf += chunk
        return True

    def next_frame(self, get_chunk) -> tuple[bytes, int, bytes] | None:
        if not self._need(SYNC_HEADER.size, get_chunk):
            return None
        ident, length = SYNC_HEADER.unpack_from(self.buf)
        take = 0 if ident in self.NO_PAYLOAD else length
        if take > SYNC_DATA_MAX + 1024 * 4:
            raise ProtocolError(f"sync {ident!r} frame of {length} bytes")
        if not self._need(SYNC_HEADER.size + take, get_chunk):
            return None
        payload = bytes(self.buf[SYNC_HEADER.size:SYNC_HEADER.size + take])
        del self.buf[:SYNC_HEADER.size + take]
        return ident, length, payload
