"""The device end of adb's TCP transport on 127.0.0.1: the CNXN handshake (no
authentication; the RSA AUTH exchange against given keys; the exchange of a device that
never accepts a key, for `--state unauthorized`; or silence, for `--state offline`), then
streams: OPEN -> OKAY(local, remote) or CLSE, WRTE acknowledged
by OKAY (one unacknowledged WRTE per stream each way), CLSE. One thread per connection
reads messages; each stream's service runs in its own thread."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import threading
from typing import Callable

from amc_tf.benchmarks.adbemu import auth, services, wire
from amc_tf.benchmarks.adbemu.sandbox import Sandbox

STATES = ("device", "unauthorized", "offline")
FEATURES = ["shell_v2", "cmd", "fixed_push_mkdir"]


class Stream:
    def __init__(self, conn: "Connection", local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.inbox: queue.Queue = queue.Queue()
        self.acked = threading.Event()
        self.closed = threading.Event()
        self.wlock = threading.Lock()

    def read(self) -> bytes | None:
        if self.closed.is_set() and self.inbox.empty():
            return None
        chunk = self.inbox.get()
        return chunk

    def write(self, data: bytes) -> bool:
        step = self.conn.max_payload
        with self.wlock:
            for i in range(0, len(data), step):
                if self.closed.is_set():
                    return False
                self.acked.clear()
                if not self.conn.send(wire.Message(wire.A_WRTE, self.local_id, self.remote_id, data[i:i + step])):
                    return False
                while not self.acked.wait(0.5):
                    if self.closed.is_set():
                        return False
        return True

    def close(self) -> None:
        """Our side ends the stream (CLSE to the host)."""
        if not self.closed.is_set():
            self.closed.set()
            self.conn.send(wire.Message(wire.A_CLSE, self.local_id, self.remote_id))
        self.inbox.put(None)
        self.conn.streams.pop(self.local_id, None)

    def hangup(self) -> None:
        """The host ended the stream (CLSE from it, or the connection dropped)."""
        self.closed.set()
        self.acked.set()
        self.inbox.put(None)


class Connection:
    def __init__(self, sock: socket.socket, device: "EmulatedDevice"):
        self.sock, self.device = sock, device
        self.version = wire.A_VERSION_MIN
        self.max_payload = wire.MAX_PAYLOAD_V1
        self.online = False
        self.token: bytes | None = None
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.slock = threading.Lock()

    def send(self, msg: wire.Message) -> bool:
        # the host learns our version from our CNXN: until then (AUTH, CNXN itself) checksums are real
        skip = self.online and self.version >= wire.A_VERSION_SKIP_CHECKSUM and msg.command != wire.A_CNXN
        data = msg.encode(with_checksum=not skip)
        try:
            with self.slock:
                self.sock.sendall(data)
            return True
        except OSError:
            return False

    def run(self) -> None:
        recv_exact = wire.socket_reader(self.sock)
        try:
            while True:
                msg = wire.read_message(recv_exact, verify_checksum=self.version < wire.A_VERSION_SKIP_CHECKSUM)
                self.handle(msg)
        except EOFError:
            pass
        except wire.ProtocolError as exc:
            self.device.say(f"closing connection: {exc}")
        except OSError:
            pass
        finally:
            self.drop()
            if self in self.device.conns:
                self.device.conns.remove(self)
            self.device.say("connection closed")

    def drop(self) -> None:
        for s in list(self.streams.values()):
            s.hangup()
        self.streams.clear()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def handle(self, msg: wire.Message) -> None:
        dev = self.device
        if msg.command == wire.A_CNXN:
            kind, _, host_features = wire.parse_banner(msg.data)
            self.version = min(msg.arg0, wire.A_VERSION)
            self.max_payload = max(wire.MAX_PAYLOAD_V1, min(msg.arg1, wire.MAX_PAYLOAD))
            dev.say(f"CNXN from the {kind or 'host'} (version 0x{msg.arg0:08x}, max payload {msg.arg1}); "
                    f"state {dev.state}")
            if dev.state == "offline":
                return
            if dev.auth_keys is None:
                self._online()  # no authentication, as a device with ro.adb.secure=0
            else:
                self._ask_token()
            return
        if msg.command == wire.A_AUTH and dev.auth_keys is not None and not self.online:
            if msg.arg0 == wire.AUTH_SIGNATURE:
                if self.token and any(auth.verify(k, self.token, msg.data) for k in dev.auth_keys):
                    dev.say("signature verified with an authorised key")
                    self._online()
                else:
                    self._ask_token()  # not signed by an authorised key: a new token, as adbd does
            elif msg.arg0 == wire.AUTH_RSAPUBLICKEY:
                dev.say("the host offered its public key: the 'Allow USB debugging?' prompt is never accepted")
            return
        if not self.online:
            return  # nothing but the handshake before the device is online (offline stays silent)
        if msg.command == wire.A_OPEN:
            self._open(msg.arg0, msg.data.rstrip(b"\0").decode("utf-8", errors="replace"))
        elif msg.command == wire.A_WRTE:
            stream = self.streams.get(msg.arg1)
            if stream is None:
                self.send(wire.Message(wire.A_CLSE, 0, msg.arg0))
                return
            stream.inbox.put(msg.data)
            self.send(wire.Message(wire.A_OKAY, stream.local_id, stream.remote_id))
        elif msg.command == wire.A_OKAY:
            stream = self.streams.get(msg.arg1)
            if stream is not None:
                stream.remote_id = msg.arg0
                stream.acked.set()
        elif msg.command == wire.A_CLSE:
            stream = self.streams.pop(msg.arg1, None)
            if stream is not None:
                stream.hangup()

    def _ask_token(self) -> None:
        self.token = os.urandom(wire.TOKEN_SIZE)
        self.send(wire.Message(wire.A_AUTH, wire.AUTH_TOKEN, 0, self.token))

    def _online(self) -> None:
        features = [f for f in FEATURES if self.device.shell_v2 or f != "shell_v2"]
        banner = wire.device_banner(self.device.sandbox.props, features)
        self.send(wire.Message(wire.A_CNXN, wire.A_VERSION, wire.MAX_PAYLOAD, banner))
        self.online = True

    def _open(self, remote_id: int, name: str) -> None:
        dev = self.device
        target = None
        shell = wire.parse_shell_service(name)
        if shell is not None:
            v2, args, command = shell
            if v2 and not dev.shell_v2:
                shell = None
            else:  # legacy shell: a pty on the adbd of old devices (\n arrives as \r\n); v2: only if asked
                onlcr = not v2 or "pty" in args
                target = lambda s: services.run_shell(s, dev.sandbox, command, v2, dev.procs, onlcr=onlcr)
        elif name.startswith("exec:"):
            target = lambda s: services.run_shell(s, dev.sandbox, name[5:], False, dev.procs, stderr_separate=False)
        elif name == "sync:":
            target = lambda s: services.run_sync(s, dev.sandbox)
        if target is None:
            dev.say(f"refused service {name.split(':')[0]!r}")
            self.send(wire.Message(wire.A_CLSE, 0, remote_id))
            return
        local_id = self.next_id
        self.next_id += 1
        stream = Stream(self, local_id, remote_id)
        self.streams[local_id] = stream
        self.send(wire.Message(wire.A_OKAY, local_id, remote_id))
        threading.Thread(target=target, args=(stream,), daemon=True, name=f"adbemu-{local_id}").start()


class EmulatedDevice:
    """Listens on 127.0.0.1:port (0 picks a free port; `.port` tells which)."""

    def __init__(self, sandbox: Sandbox, port: int = 15555, state: str = "device", shell_v2: bool = True,
                 say: Callable[[str], None] | None = None, adb_keys: list[auth.PublicKey] | None = None):
        """adb_keys: require RSA authentication and accept these keys (adbd's adb_keys);
        None: no authentication. state "unauthorized" asks for it and accepts no key."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        self.sandbox, self.state, self.shell_v2 = sandbox, state, shell_v2
        self.auth_keys = [] if state == "unauthorized" else adb_keys
        self.say = say or (lambda _m: None)
        from amc_tf.benchmarks.adbemu.reaper import ProcessGroups

        self.procs: set[subprocess.Popen] = ProcessGroups()  # they die with the emulator, even on SIGKILL
        self.conns: list[Connection] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        while not self._stopped.is_set():
            try:
                sock, peer = self.listener.accept()
            except OSError:
                break
            if not peer[0].startswith("127."):
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(sock, self)
            self.conns.append(conn)
            self.say(f"connection from {peer[0]}:{peer[1]}")
            threading.Thread(target=conn.run, daemon=True, name="adbemu-conn").start()

    def start(self) -> "EmulatedDevice":
        threading.Thread(target=self.serve_forever, daemon=True, name="adbemu-accept").start()
        return self

    def stop(self) -> None:
        """Pulls the cable: the listener and every connection close at once, the sessions' processes end."""
        self._stopped.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for conn in list(self.conns):
            conn.drop()
        for proc in list(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.procs.close()
