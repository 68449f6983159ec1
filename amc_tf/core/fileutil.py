"""Small file helpers shared by conversion, calibration, evaluation and benchmarks.

Every untrusted file the tool hashes or reads (images, LUTs, logs, report.json, manifests,
checkpoints, models) is opened through `open_regular`: a FIFO, a device (a link to /dev/zero),
a socket or a directory is refused *before* a byte is read, so nothing blocks or reads forever,
and every read is bounded by a size cap checked before reading and enforced while reading.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import secrets
import stat

from amc_tf.core.errors import AmcError

MAX_HASH_BYTES = 1 << 30  # 1 GiB: far above any model, image or checkpoint the tool hashes
_CHUNK = 1 << 20


class NotRegularFileError(AmcError):
    """The path is a FIFO, a device, a socket or a directory: never read (exit 2)."""


class FileTooLargeError(AmcError):
    """The file is over the size cap of what is read from it (exit 2)."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def open_regular(path: str | os.PathLike, max_bytes: int | None = None, *, nofollow: bool = False,
                 what: str | None = None) -> io.BufferedReader:
    """`path` opened for binary reading, after making sure it is a regular file of at most
    `max_bytes` bytes (None: no cap here).

    The path is stat'ed first and a FIFO, device, socket or directory is refused without being
    opened (opening some devices has effects). It is then opened with O_NONBLOCK (a FIFO swapped
    in after the stat cannot block the open) and O_NOCTTY, fstat'ed, and refused again unless the
    open file is the same regular file. `nofollow` adds O_NOFOLLOW (a symlink itself is refused).
    Errors: NotRegularFileError / FileTooLargeError (AmcError, exit 2) naming `what` or the path;
    OSError when the path cannot be opened at all (the CLI names it)."""
    path = os.fspath(path)
    label = what or path
    st = os.lstat(path) if nofollow else os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError(f"{label}: {_kind(st.st_mode)}, not a regular file (not read)")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    if nofollow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            raise NotRegularFileError(f"{label}: {_kind(fst.st_mode)}, not a regular file (it changed while "
                                      "being opened; not read)")
        if max_bytes is not None and fst.st_size > max_bytes:
            raise FileTooLargeError(f"{label}: {fst.st_size:,} bytes, over the limit of {max_bytes:,} bytes "
                                    "for this kind of file (not read)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, max_bytes: int, *, nofollow: bool = False,
                 what: str | None = None) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (see open_regular); a file that grows
    past the cap while being read is refused too (the read stops at max_bytes + 1)."""
    with open_regular(path, max_bytes, nofollow=nofollow, what=what) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLargeError(f"{what or os.fspath(path)}: over the limit of {max_bytes:,} bytes "
                                "for this kind of file (it grew while being read; not read)")
    return data


def sha256_file(path: str | os.PathLike, max_bytes: int = MAX_HASH_BYTES, *, what: str | None = None) -> str:
    """Hex sha256 of a regular file's bytes (at most `max_bytes`), read in 1 MiB chunks. A FIFO or
    a device is refused before it is read (see open_regular), never hashed forever."""
    h = hashlib.sha256()
    n = 0
    with open_regular(path, max_bytes, what=what) as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            n += len(chunk)
            if n > max_bytes:
                raise FileTooLargeError(f"{what or os.fspath(path)}: over the limit of {max_bytes:,} bytes "
                                        "(it grew while being hashed)")
            h.update(chunk)
    return h.hexdigest()


# --- writing: a file or a folder appears whole or not at all, and never replaces what it should not ---

_RENAME_NOREPLACE = 1  # <linux/fs.h>
_renameat2 = None


def _libc_renameat2():
    global _renameat2
    if _renameat2 is None:
        import ctypes

        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (OSError, AttributeError):  # not glibc >= 2.28 / not Linux
            _renameat2 = False
    return _renameat2


def _dir_fd_arg(fd):
    return -100 if fd is None else fd  # AT_FDCWD


def rename_noreplace(src: str | os.PathLike, dst: str | os.PathLike, *, src_dir_fd: int | None = None,
                     dst_dir_fd: int | None = None) -> None:
    """Rename `src` to `dst`, failing with FileExistsError when `dst` exists (a file, a folder, even an
    empty one, or a symlink, which is never followed). Atomic with renameat2(RENAME_NOREPLACE) on
    Linux; elsewhere a regular file goes by link + unlink (also atomic) and a folder by
    check-then-rename (a race can then only replace an empty folder: rename refuses a non-empty one)."""
    fn = _libc_renameat2()
    if fn:
        import ctypes

        if fn(_dir_fd_arg(src_dir_fd), os.fsencode(src), _dir_fd_arg(dst_dir_fd), os.fsencode(dst),
              _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):  # EINVAL: the filesystem lacks the flag
            raise OSError(err, os.strerror(err), os.fspath(dst))
    st = os.lstat(src, dir_fd=src_dir_fd)
    if stat.S_ISDIR(st.st_mode):
        try:
            os.lstat(dst, dir_fd=dst_dir_fd)
        except FileNotFoundError:
            os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
            return
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(dst))
    os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)
    os.unlink(src, dir_fd=src_dir_fd)


def publish(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False,
            src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
    """Move a finished file or folder into place by rename (same filesystem). Without `overwrite`
    an existing `dst` is never replaced (FileExistsError); with it a file or symlink at `dst` is
    replaced atomically (the link itself, not its target). Symlinks are never followed."""
    if overwrite:
        os.replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
    else:
        rename_noreplace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


def write_file(path: str | os.PathLike, data: bytes | str, *, overwrite: bool = False, mode: int = 0o666) -> None:
    """Write `data` to `path` atomically: a temp file beside it (O_EXCL | O_NOFOLLOW, so nothing is
    written through a planted link), fsynced, then published by rename. Without `overwrite` an
    existing `path` is left alone (FileExistsError); a failure leaves no temp file behind."""
    path = os.fspath(path)
    if isinstance(data, str):
        data = data.encode()
    folder, name = os.path.split(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, mode)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 32 random bits
        raise FileExistsError(errno.EEXIST, "no free temp name", tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        publish(tmp, path, overwrite=overwrite)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def hold_name(folder: str | os.PathLike, name: str, kind: str):
    """Hold the pair (`folder`, `name`) for this process, for outputs that are not a folder of
    their own (a bench's logs of one name, a LUT file and its partial file): a unix socket bound to
    an abstract address (Linux) named after the folder's device and inode, `kind` and a hash of
    `name`. Returns the socket (close it to let go; the kernel frees it when the process dies,
    SIGKILL too; no lock file is left), None where there is no abstract namespace (no lock), or
    raises BlockingIOError when another process holds the pair."""
    import socket
    import sys

    if not sys.platform.startswith("linux"):
        return None
    st = os.stat(folder)
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | getattr(socket, "SOCK_CLOEXEC", 0))
    try:
        sock.bind(f"\0amc-tf-{kind}:{st.st_dev}:{st.st_ino}:{digest}")
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BlockingIOError(errno.EWOULDBLOCK, f"held by another process: {name}") from None
        return None
    return sock
def is_regular(path: str | os.PathLike) -> bool:
    """True when `path` (links followed) is a regular file; False for anything else or an error."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
