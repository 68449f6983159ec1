"""Small file helpers shared by conversion, calibration, evaluation and benchmarks.

Every untrusted file the tool hashes or reads (images, LUTs, logs, report.json, manifests,
checkpoints, models) is opened through `open_regular`: a FIFO, a device (a link to /dev/zero),
a socket or a directory is refused *before* a byte is read, so nothing blocks or reads forever,
and every read is bounded by a size cap checked before reading and enforced while reading.
"""

from __future__ import annotations

import hashlib
import io
import os
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


def is_regular(path: str | os.PathLike) -> bool:
    """True when `path` (links followed) is a regular file; False for anything else or an error."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
