"""The device services behind OPEN: `shell:` (legacy, stdout and stderr merged, no exit
status), `shell,v2,...:` (shell protocol v2 packets with the exit status), `exec:` and
`sync:` (STAT, LIST, SEND, RECV, QUIT). Each runs in its own thread over a stream with
`read() -> bytes | None` (None: the host closed it), `write(bytes) -> bool` and `close()`."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading

from amc_tf.benchmarks.adbemu import wire
from amc_tf.benchmarks.adbemu.sandbox import Sandbox


def _exit_code(rc: int) -> int:
    return (128 - rc if rc < 0 else rc) & 0xFF


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_shell(stream, sandbox: Sandbox, command: str, v2: bool, procs: set | None = None,
              stderr_separate: bool | None = None, onlcr: bool = False) -> None:
    """Runs `command` with the host's /bin/sh inside the sandbox (an interactive shell reading
    stdin when the command is empty). No real pty: `onlcr` only does what a pty's output
    processing does to what the device sends (every \n becomes \r\n), as the pty of the
    legacy `shell:` service of older adbd did."""
    separate = v2 if stderr_separate is None else stderr_separate
    argv = ["/bin/sh", "-c", sandbox.rewrite(command)] if command else ["/bin/sh"]
    try:
        proc = subprocess.Popen(argv, cwd=sandbox.root, env=sandbox.shell_env(dict(os.environ)),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE if separate else subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        msg = f"/system/bin/sh: cannot run: {exc.strerror}\n".encode()
        stream.write(wire.shell_packet(wire.SHELL_STDERR, msg) + wire.shell_packet(wire.SHELL_EXIT, b"\x7f")
                     if v2 else msg)
        stream.close()
        return
    if procs is not None:
        procs.add(proc)
    finished = threading.Event()
    # the host hung up while the process was not reading its stdin (the buffer full): SIGHUP now,
    # as adbd does, so the feeder's blocked write ends and the buffered data is freed
    stream.on_stuck_hangup = lambda: _kill_group(proc, signal.SIGHUP)

    def pump(fh, kind):
        while True:
            data = os.read(fh.fileno(), 65536)
            if not data:
                break
            if onlcr:
                data = data.replace(b"\n", b"\r\n")
            if not stream.write(wire.shell_packet(kind, data) if v2 else data):
                break
        fh.close()

    def feed():
        decoder = wire.ShellDecoder()
        while True:
            chunk = stream.read()
            if chunk is None:
                break
            packets = decoder.feed(chunk) if v2 else [(wire.SHELL_STDIN, chunk)]
            for kind, data in packets:
                try:
                    if kind == wire.SHELL_STDIN and data:
                        proc.stdin.write(data)
                        proc.stdin.flush()
                    elif kind == wire.SHELL_CLOSE_STDIN:
                        proc.stdin.close()
                except (BrokenPipeError, ValueError, OSError):
                    pass
        if not finished.is_set():
            # the host hung up (client killed, cable pulled): the session's processes go, as with adbd's SIGHUP
            _kill_group(proc, signal.SIGHUP)
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL)

    pumps = [threading.Thread(target=pump, args=(proc.stdout, wire.SHELL_STDOUT), daemon=True)]
    if separate:
        pumps.append(threading.Thread(target=pump, args=(proc.stderr, wire.SHELL_STDERR), daemon=True))
    feeder = threading.Thread(target=feed, daemon=True)
    for t in pumps + [feeder]:
        t.start()
    for t in pumps:
        t.join()
    rc = proc.wait()
    finished.set()
    try:
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass
    if procs is not None:
        procs.discard(proc)
    if v2:
        stream.write(wire.shell_packet(wire.SHELL_EXIT, bytes([_exit_code(rc)])))
    stream.close()


# -- sync ------------------------------------------------------------------------------
def _fail(stream, message: str) -> None:
    stream.write(wire.sync_msg(b"FAIL", message.encode("utf-8", errors="replace")))


def _errtext(exc: OSError) -> str:
    return exc.strerror or str(exc)


def run_sync(stream, sandbox: Sandbox) -> None:
    reader = wire.SyncReader()
    try:
        while True:
            frame = reader.next_frame(stream.read)
            if frame is None:
                return
            ident, length, payload = frame
            if ident == b"QUIT":
                return
            text = payload.decode("utf-8", errors="surrogateescape")
            if "\0" in text and ident in (b"STAT", b"LIST", b"RECV"):
                _fail(stream, "invalid path (a NUL byte)")  # the stream goes on, as after any FAIL answer
                continue
            if ident == b"STAT":
                stream.write(_stat(sandbox, text))
            elif ident == b"LIST":
                stream.write(_list(sandbox, text))
            elif ident == b"RECV":
                _recv(stream, sandbox, text)
            elif ident == b"SEND":
                if not _send(stream, reader, sandbox, text):
                    return
            else:
                _fail(stream, f"unknown sync request {ident!r}")
                return
    except wire.ProtocolError as exc:
        _fail(stream, str(exc))
    except Exception as exc:  # anything malformed: a FAIL answer and the stream closed, never a traceback
        _fail(stream, f"{type(exc).__name__}: {exc}")
    finally:
        stream.close()


def _stat(sandbox: Sandbox, path: str) -> bytes:
    try:
        st = os.lstat(sandbox.host_path(path, for_write=False))
        return wire.sync_stat(st.st_mode, st.st_size, int(st.st_mtime))
    except OSError:
        return wire.sync_stat(0, 0, 0)


def _list(sandbox: Sandbox, path: str) -> bytes:
    out = bytearray()
    try:
        host = sandbox.host_path(path, for_write=False)
        for name in [".", ".."] + sorted(os.listdir(host)):
            try:
                st = os.lstat(host / name)
            except OSError:
                continue
            out += wire.sync_dent(st.st_mode, st.st_size, int(st.st_mtime), name.encode("utf-8", "surrogateescape"))
    except OSError:
        pass
    return bytes(out) + wire.SYNC_DENT_DONE


def _recv(stream, sandbox: Sandbox, path: str) -> None:
    try:
        fh = open(sandbox.host_path(path, for_write=False), "rb")
    except OSError as exc:
        _fail(stream, _errtext(exc))
        return
    batch = bytearray()  # DATA frames (64 KiB each at most) batched up to one WRTE's payload
    with fh:
        while True:
            data = fh.read(wire.SYNC_DATA_MAX)
            if data:
                batch += wire.sync_msg(b"DATA", data)
            if not data or len(batch) + wire.SYNC_DATA_MAX + 8 > stream.conn.max_payload:
                if batch and not stream.write(bytes(batch)):
                    return
                batch.clear()
            if not data:
                break
    stream.write(wire.sync_msg(b"DONE", length=0))


def _send(stream, reader: wire.SyncReader, sandbox: Sandbox, spec: str) -> bool:
    """SEND path,mode then DATA... DONE(mtime): the file lands whole (a temp file made with
    O_EXCL | O_NOFOLLOW in its folder, reached one component at a time without following links,
    then renamed) and the answer is OKAY, or FAIL with the reason. A symbolic link (mode
    S_IFLNK) is never created. False when the stream ended mid-file."""
    path, _, mode_text = spec.rpartition(",")
    error = None
    try:
        mode = int(mode_text)
    except ValueError:
        path, mode, error = spec, 0o100644, f"bad SEND mode in {spec!r}"
    if error is None and stat.S_ISLNK(mode):
        error = "couldn't create symlink: symbolic links are not supported by this device"
    if error is None and "\0" in path:
        error = "couldn't create file: invalid path (a NUL byte)"
    fh = tmp = dfd = name = None
    if error is None:
        try:
            dfd, name = sandbox.write_parent(path)
            try:
                if stat.S_ISDIR(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode):
                    raise IsADirectoryError(21, "Is a directory", path)
            except FileNotFoundError:
                pass
            tmp = f".{name}.adbemu-{os.getpid()}-{threading.get_ident()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=dfd)
            fh = os.fdopen(fd, "wb")
        except OSError as exc:
            tmp = None
            error = f"couldn't create file: {_errtext(exc)}"
    try:
        while True:
            frame = reader.next_frame(stream.read)
            if frame is None:
                return False
            ident, length, payload = frame
            if ident == b"DATA":
                if fh is not None and error is None:
                    try:
                        fh.write(payload)
                    except OSError as exc:
                        error = f"write failed: {_errtext(exc)}"
            elif ident == b"DONE":
                mtime = length
                break
            else:
                error = error or f"unexpected {ident!r} in SEND"
                _fail(stream, error)
                return False
        if error is None:
            try:
                os.fchmod(fh.fileno(), mode & 0o777)
                fh.flush()
                os.utime(fh.fileno(), (mtime, mtime))
                fh.close()
                fh = None
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
                tmp = None
            except OSError as exc:
                error = f"couldn't finish {path}: {_errtext(exc)}"
        if error is None:
            stream.write(wire.sync_msg(b"OKAY", length=0))
        else:
            _fail(stream, error)
        return True
    finally:
        if fh is not None:
            fh.close()
        if tmp is not None:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
        if dfd is not None:
            os.close(dfd)
