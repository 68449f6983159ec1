"""The emulated device's file system and properties.

`--root DIR` plays the device's writable storage: device paths under /data and /sdcard
live in DIR/data and DIR/sdcard (so /data/local/tmp/x is DIR/data/local/tmp/x). Everything
else is the host's own: /sys, /proc, /bin/sh and the tools (`sh`, `chmod`, `stat`,
`sha256sum`, `taskset` are the host's coreutils/util-linux, not toybox), so what runs on
this "device" measures the host, not a phone. `getprop` is a small script in
DIR/system/bin, first on the shell's PATH.

Shell commands get one documented rewrite: a path that starts a word (after a blank, a
quote, `=`, `:`, `;`, `|`, `&`, `(`, `<`, `>` or a backquote) and begins with /data/ or
/sdcard/ is prefixed with DIR. Sync (push/pull) maps paths exactly, after normalising
`..`; writes outside /data and /sdcard fail as on an unrooted phone ("Read-only file
system"); reads outside them read the host's file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import posixpath
import re
import shlex
import stat
from pathlib import Path

from amc_tf.core.errors import AmcError

MAPPED = ("/data", "/sdcard")
SAFE_ROOT = re.compile(r"^[A-Za-z0-9._/+-]+$")
_WORD_START = r"(?:^|(?<=[\s'\"=:;|&(<>`]))"
_REWRITE = re.compile(_WORD_START + r"(/(?:data|sdcard)(?=/|$|[\s'\";|&)<>`]))")

ABIS = {"x86_64": ("x86_64", "x86_64,x86"), "amd64": ("x86_64", "x86_64,x86"), "aarch64": ("arm64-v8a", "arm64-v8a"),
        "arm64": ("arm64-v8a", "arm64-v8a"), "i686": ("x86", "x86"), "armv7l": ("armeabi-v7a", "armeabi-v7a")}


def default_props(secure: bool = False) -> dict[str, str]:
    abi, abilist = ABIS.get(platform.machine().lower(), (platform.machine().lower(), platform.machine().lower()))
    return {
        "ro.product.name": "amc_tf_emu", "ro.product.model": "amc-tf emulated device (host CPU)",
        "ro.product.device": "amc_tf_emu", "ro.product.brand": "amc-tf", "ro.product.manufacturer": "amc-tf",
        "ro.product.cpu.abi": abi, "ro.product.cpu.abilist": abilist,
        "ro.build.version.release": "10", "ro.build.version.sdk": "29", "ro.build.type": "userdebug",
        "ro.hardware": "host", "ro.debuggable": "1", "ro.adb.secure": "1" if secure else "0",
        "ro.kernel.amc_tf_emulator": "1",
    }


def parse_props(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not re.match(r"^[A-Za-z0-9._-]+$", key):
            raise AmcError(f"--prop wants KEY=VALUE with a key of letters, digits, '.', '_' or '-', got {item!r}")
        if "\n" in val or "\0" in val:
            raise AmcError(f"--prop {key}: the value must be one line")
        out[key] = val
    return out


SYSTEM_DIRS = ("/", "/bin", "/boot", "/dev", "/etc", "/proc", "/root", "/run", "/sbin", "/sys", "/usr", "/var")
MARKER = ".amc-tf-emulator-root"
ROOT_ENTRIES = {MARKER, "data", "sdcard", "system"}  # what an emulator root holds at its top


MARKER_TEXT = b"amc-tf emulated device root\n"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _root_problem(root: Path) -> str | None:
    """Why `root` (an existing path) is not a folder the emulator may use, or None. A root is
    a real folder (not a link), empty or holding only what an emulator root holds: the marker
    as a regular file of this user with one link, and data, sdcard, system as real folders.
    A planted link is not a marker, and no entry may be a link: nothing is written through one."""
    st = os.lstat(root)
    if stat.S_ISLNK(st.st_mode):
        return f"--root {root} is a symbolic link; give the real directory"
    if not stat.S_ISDIR(st.st_mode):
        return f"--root {root} exists and is not a directory"
    try:
        names = sorted(os.listdir(root))
    except OSError as exc:
        return f"--root {root}: cannot list it: {exc.strerror}"
    extra = [name for name in names if name not in ROOT_ENTRIES]
    if extra:
        return (f"--root {root} is neither empty nor an earlier emulator root (it holds {extra[0]}"
                f"{' and more' if len(extra) > 1 else ''}); give a new or empty directory")
    for name in names:
        est = os.lstat(root / name)
        if stat.S_ISLNK(est.st_mode):
            return f"--root {root}: {name} is a symbolic link, not what the emulator made; give a new or empty directory"
        if name == MARKER:
            if not stat.S_ISREG(est.st_mode) or est.st_nlink != 1 or est.st_uid != os.getuid():
                return (f"--root {root}: {MARKER} is not a marker this emulator wrote (not a regular file of "
                        "this user); give a new or empty directory")
        elif not stat.S_ISDIR(est.st_mode):
            return f"--root {root}: {name} is not a directory; give a new or empty directory"
    return None


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def check_root(raw: str) -> Path:
    """The resolved --root: not empty, not / or a system directory itself, and either missing,
    empty or an earlier emulator root (see _root_problem); never a symbolic link."""
    if not str(raw).strip():
        raise AmcError("--root must not be empty (give a new or empty directory for the device's storage)")
    given = Path(os.path.abspath(raw))
    if os.path.islink(given):
        raise AmcError(f"--root {given} is a symbolic link; give the real directory")
    root = given.resolve()
    if str(root) in SYSTEM_DIRS or re.fullmatch(r"/lib[^/]*", str(root)):
        raise AmcError(f"--root {root} is a system directory; give a new or empty directory")
    if os.path.lexists(root):
        problem = _root_problem(root)
        if problem:
            raise AmcError(problem)
    return root


class Sandbox:
    def __init__(self, root: Path, props: dict[str, str]):
        if not str(root).strip():
            raise AmcError("--root must not be empty (give a new or empty directory for the device's storage)")
        if os.path.islink(os.path.abspath(root)):
            raise AmcError(f"--root {os.path.abspath(root)} is a symbolic link; give the real directory")
        root = Path(root).resolve()
        if not SAFE_ROOT.match(str(root)):
            raise AmcError(f"--root {root}: use a path of letters, digits and ._/+- only "
                           "(it is spliced into the device's shell commands)")
        if root.exists() and not root.is_dir():
            raise AmcError(f"--root {root} exists and is not a directory")
        self.root = root
        self._root_id: tuple[int, int] | None = None
        self.props = dict(props)
        self.bindir = root / "system" / "bin"

    def prepare(self) -> None:
        """Create (or re-check) the root, its folders, the marker and getprop. Everything is made
        through directory fds with O_NOFOLLOW: a link planted in the root is refused, never
        written through."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(self.root)
        except FileExistsError:
            pass
        problem = _root_problem(self.root)
        if problem:
            raise AmcError(problem)
        for sub in ("data/local/tmp", "sdcard", "system/bin"):
            os.close(self._walk(sub.split("/"), create=True))
        fd = self._root_fd()
        try:
            mfd = os.open(MARKER, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=fd)
            try:
                if not stat.S_ISREG(os.fstat(mfd).st_mode) or os.fstat(mfd).st_nlink != 1:
                    raise AmcError(f"--root {self.root}: {MARKER} is not a marker this emulator wrote")
                os.ftruncate(mfd, 0)
                os.write(mfd, MARKER_TEXT)
            finally:
                os.close(mfd)
        finally:
            os.close(fd)
        props = sorted(self.props.items())
        cases = "\n".join(f"  {shlex.quote(k)}) printf '%s\\n' {shlex.quote(v)} ;;" for k, v in props)
        listing = "\n".join(f"  printf '[%s]: [%s]\\n' {shlex.quote(k)} {shlex.quote(v)}"
                            for k, v in props)
        script = (f"#!/bin/sh\n# getprop of the amc-tf emulated device (written by `amc-tf device emulate`)\n"
                  f"if [ $# -eq 0 ]; then\n{listing}\n  exit 0\nfi\n"
                  f"case \"$1\" in\n{cases}\n  *) printf '%s\\n' \"$2\" ;;\nesac\n")
        bfd = self._walk(["system", "bin"], create=False)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(".getprop.tmp", dir_fd=bfd)
            tfd = os.open(".getprop.tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                          0o755, dir_fd=bfd)
            with os.fdopen(tfd, "wb") as fh:
                fh.write(script.encode())
                os.fchmod(fh.fileno(), 0o755)
            os.replace(".getprop.tmp", "getprop", src_dir_fd=bfd, dst_dir_fd=bfd)
        finally:
            os.close(bfd)

    # -- paths beneath the root, one component at a time -------------------------------
    def _root_fd(self) -> int:
        fd = os.open(self.root, _DIR_FLAGS)
        st = os.fstat(fd)
        if self._root_id is None:
            self._root_id = (st.st_dev, st.st_ino)
        elif (st.st_dev, st.st_ino) != self._root_id:
            os.close(fd)
            raise PermissionError(errno.EACCES, "the device's storage was replaced", str(self.root))
        return fd

    def _walk(self, parts: list[str], create: bool) -> int:
        """An fd of root/parts[0]/parts[1]/..., each opened with O_NOFOLLOW beneath the last (made
        first when `create`): a symbolic link anywhere on the way is refused (ELOOP), so nothing
        reaches outside the root through one."""
        fd = self._root_fd()
        try:
            for name in parts:
                if name in ("", ".", "..") or "/" in name or "\0" in name:
                    raise FileNotFoundError(errno.ENOENT, "No such file or directory", name)
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o777, dir_fd=fd)
                try:
                    nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(name, fd):
                        raise PermissionError(errno.EACCES, "Permission denied (a symbolic link on the way)",
                                              name) from None
                    raise
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def write_parent(self, device_path: str) -> tuple[int, str]:
        """(an fd of the folder, the file name) where a sync write of `device_path` lands: the
        missing folders are made (adbd's fixed_push_mkdir), none is followed through a link.
        The caller closes the fd. OSError as the device would say."""
        host = self.host_path(device_path, for_write=True)
        parts = list(host.relative_to(self.root).parts)
        if len(parts) < 2:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", device_path)
        return self._walk(parts[:-1], create=True), parts[-1]

    # -- shell --------------------------------------------------------------------------
    def rewrite(self, command: str) -> str:
        return _REWRITE.sub(lambda m: str(self.root) + m.group(1), command)

    def shell_env(self, base: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in base.items() if not k.startswith(("ANDROID_", "ADB"))}
        env.update(PATH=f"{self.bindir}:{base.get('PATH', '/usr/bin:/bin')}", HOME=str(self.root / "data/local/tmp"),
                   ANDROID_DATA=str(self.root / "data"), EXTERNAL_STORAGE=str(self.root / "sdcard"),
                   TMPDIR=str(self.root / "data/local/tmp"), AMC_TF_EMULATED_DEVICE="1")
        return env

    # -- sync ---------------------------------------------------------------------------
    def host_path(self, device_path: str, for_write: bool) -> Path:
        """The host file for a device path; OSError(EROFS/ENOENT) as the device would say."""
        if "\0" in device_path:
            raise FileNotFoundError(errno.EINVAL, "Invalid argument (a NUL byte in the path)")
        if not device_path.startswith("/"):
            raise FileNotFoundError(f"{device_path}: not an absolute path")
        norm = posixpath.normpath(device_path)
        if norm.startswith("//"):
            norm = norm[1:]
        for top in MAPPED:
            if norm == top or norm.startswith(top + "/"):
                return self.root / norm.lstrip("/")
        if for_write:
            raise PermissionError(30, "Read-only file system", device_path)
        return Path(norm)
