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


STREAM_BUFFER = 1 << 20  # bytes the host may have sent that the service has not consumed, per stream
DEVICE_BUFFER = 256 << 20  # and for the whole device
MAX_CONNECTIONS = 16
MAX_STREAMS = 32  # open streams per connection
HANDSHAKE_TIMEOUT = 60.0  # seconds a connection may take to come online (CNXN, and AUTH if asked)
ACCEPT_RETRY_S = 0.5  # pause after accept() fails (EMFILE...) before trying again


class Stream:
    """One stream. The host's WRTEs queue in `inbox`; each is acknowledged (OKAY) at once while
    the stream holds less than STREAM_BUFFER unread bytes (and the device DEVICE_BUFFER), else
    only when the service has read enough, as adbd does: the host sends nothing more on a stream
    until its WRTE is acknowledged, so a process that never reads its stdin holds at most the
    buffer, not whatever the host sends. A host that sends another WRTE before that OKAY breaks
    the protocol: its stream is closed."""

    def __init__(self, conn: "Connection", local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.inbox: queue.Queue = queue.Queue()
        self.acked = threading.Event()
        self.closed = threading.Event()
        self.wlock = threading.Lock()
        self.buffered = 0  # bytes in inbox
        self.ack_owed = False  # a WRTE arrived and its OKAY waits for room
        self.block = threading.Lock()
        self.on_stuck_hangup: Callable[[], None] | None = None

    def deliver(self, data: bytes) -> None:
        """A WRTE from the host (the connection's reader thread)."""
        dev = self.conn.device
        with self.block:
            if self.ack_owed:
                violation = True
            else:
                violation = False
                self.buffered += len(data)
                dev.account(len(data))
                self.inbox.put(data)
                ack = self.buffered <= STREAM_BUFFER and dev.buffered <= DEVICE_BUFFER
                self.ack_owed = not ack
                if self.ack_owed:
                    dev.owed[self] = None
        if violation:
            dev.say(f"stream {self.local_id}: WRTE before the OKAY of the last one; closing it")
            self.close()
            return
        if ack:
            self.conn.send(wire.Message(wire.A_OKAY, self.local_id, self.remote_id))

    def read(self) -> bytes | None:
        if self.closed.is_set() and self.inbox.empty():
            return None
        chunk = self.inbox.get()
        if chunk:
            with self.block:
                self.buffered -= len(chunk)
                self.conn.device.account(-len(chunk))
            self.conn.device.pay_owed()
        return chunk

    def pay_owed(self) -> bool:
        """Send the OKAY this stream owes if it has room now; True when it owes none any more."""
        dev = self.conn.device
        with self.block:
            ack = self.ack_owed and self.buffered <= STREAM_BUFFER // 2 and dev.buffered <= DEVICE_BUFFER
            if ack:
                self.ack_owed = False
            done = not self.ack_owed
        if ack and not self.closed.is_set():
            self.conn.send(wire.Message(wire.A_OKAY, self.local_id, self.remote_id))
        return done

    def _drain(self) -> None:
        """Forget the byte count of what the service will never read (the stream ended)."""
        with self.block:
            dropped = self.buffered
            self.buffered = 0
            self.ack_owed = False
        self.conn.device.owed.pop(self, None)
        if dropped:
            self.conn.device.account(-dropped)
            self.conn.device.pay_owed()

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
        self._drain_later()

    def hangup(self) -> None:
        """The host ended the stream (CLSE from it, or the connection dropped). If its service is
        stuck with a full buffer (a process not reading its stdin), `on_stuck_hangup` ends it."""
        self.closed.set()
        self.acked.set()
        self.inbox.put(None)
        if self.ack_owed and self.on_stuck_hangup is not None:
            self.on_stuck_hangup()

    def _drain_later(self) -> None:
        """Our side ended the stream: the service reads no more, so its queued data is dropped
        (the None sentinel that ends read() stays)."""
        with self.block:
            kept = []
            while True:
                try:
                    item = self.inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    kept.append(None)
            for item in kept:
                self.inbox.put(item)
        self._drain()


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
        timer = threading.Timer(self.device.handshake_timeout, self._handshake_expired)
        timer.daemon = True
        timer.start()
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
        except Exception as exc:  # never a traceback, never the emulator: this connection goes
            self.device.say(f"closing connection: {type(exc).__name__}: {exc}")
        finally:
            timer.cancel()
            self.drop()
            if self in self.device.conns:
                self.device.conns.remove(self)
            self.device.say("connection closed")

    def _handshake_expired(self) -> None:
        if not self.online:
            self.device.say(f"closing connection: not online after {self.device.handshake_timeout:g} s")
            self.drop()

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
            stream.deliver(msg.data)
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
        if len(self.streams) >= dev.max_streams:
            dev.say(f"refused a stream: {dev.max_streams} are open on this connection")
            self.send(wire.Message(wire.A_CLSE, 0, remote_id))
            return
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
                 say: Callable[[str], None] | None = None, adb_keys: list[auth.PublicKey] | None = None,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, max_connections: int = MAX_CONNECTIONS,
                 max_streams: int = MAX_STREAMS):
        """adb_keys: require RSA authentication and accept these keys (adbd's adb_keys);
        None: no authentication. state "unauthorized" asks for it and accepts no key."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        self.sandbox, self.state, self.shell_v2 = sandbox, state, shell_v2
        self.auth_keys = [] if state == "unauthorized" else adb_keys
        self.say = say or (lambda _m: None)
        self.handshake_timeout, self.max_connections, self.max_streams = handshake_timeout, max_connections, max_streams
        self.buffered = 0  # bytes received on all streams and not yet read by their services
        self.owed: dict[Stream, None] = {}  # streams whose last WRTE waits for its OKAY, oldest first
        self._blk = threading.Lock()
        from amc_tf.benchmarks.adbemu.reaper import ProcessGroups

        self.procs: set[subprocess.Popen] = ProcessGroups()  # they die with the emulator, even on SIGKILL
        self.conns: list[Connection] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self._stopped = threading.Event()

    def account(self, n: int) -> None:
        with self._blk:
            self.buffered += n

    def pay_owed(self) -> None:
        """Some buffer was freed: every stream that owes its host an OKAY and has room now sends it
        (a stream held back by the device-wide budget waits for others to read, not for itself)."""
        for stream in list(self.owed):
            if stream.pay_owed():
                self.owed.pop(stream, None)

    def serve_forever(self) -> None:
        """Accept connections until stop(). A failing accept() (EMFILE: out of file descriptors,
        ENOBUFS...) is retried after a pause; it never ends the server."""
        while not self._stopped.is_set():
            try:
                sock, peer = self.listener.accept()
            except OSError as exc:
                if self._stopped.is_set():
                    break
                self.say(f"accept failed ({exc.strerror or exc}); retrying in {ACCEPT_RETRY_S:g} s")
                self._stopped.wait(ACCEPT_RETRY_S)
                continue
            if not peer[0].startswith("127."):
                sock.close()
                continue
            if len(self.conns) >= self.max_connections:
                self.say(f"refused a connection from {peer[0]}:{peer[1]}: {self.max_connections} are open")
                sock.close()
                continue
            conn = None
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn = Connection(sock, self)
                self.conns.append(conn)
                self.say(f"connection from {peer[0]}:{peer[1]}")
                threading.Thread(target=conn.run, daemon=True, name="adbemu-conn").start()
            except (OSError, RuntimeError) as exc:  # RuntimeError: can't start new thread
                self.say(f"dropped a connection: {exc}")
                if conn in self.conns:
                    self.conns.remove(conn)
                sock.close()
                self._stopped.wait(ACCEPT_RETRY_S)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

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
