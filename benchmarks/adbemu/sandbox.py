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

import platform
import posixpath
import re
import shlex
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


def check_root(raw: str) -> Path:
    """The resolved --root: not empty, not / or a system directory itself, and either missing,
    empty or an earlier emulator root (holding only its marker, data, sdcard, system)."""
    if not str(raw).strip():
        raise AmcError("--root must not be empty (give a new or empty directory for the device's storage)")
    root = Path(raw).resolve()
    if str(root) in SYSTEM_DIRS or re.fullmatch(r"/lib[^/]*", str(root)):
        raise AmcError(f"--root {root} is a system directory; give a new or empty directory")
    if root.is_dir():
        try:
            extra = sorted(p.name for p in root.iterdir() if p.name not in ROOT_ENTRIES)
        except OSError as exc:
            raise AmcError(f"--root {root}: cannot list it: {exc.strerror}") from None
        if extra:
            raise AmcError(f"--root {root} is neither empty nor an earlier emulator root (it holds {extra[0]}"
                           f"{' and more' if len(extra) > 1 else ''}); give a new or empty directory")
    return root


class Sandbox:
    def __init__(self, root: Path, props: dict[str, str]):
        if not str(root).strip():
            raise AmcError("--root must not be empty (give a new or empty directory for the device's storage)")
        root = Path(root).resolve()
        if not SAFE_ROOT.match(str(root)):
            raise AmcError(f"--root {root}: use a path of letters, digits and ._/+- only "
                           "(it is spliced into the device's shell commands)")
        if root.exists() and not root.is_dir():
            raise AmcError(f"--root {root} exists and is not a directory")
        self.root = root
        self.props = dict(props)
        self.bindir = root / "system" / "bin"

    def prepare(self) -> None:
        for sub in ("data/local/tmp", "sdcard", "system/bin"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / MARKER).touch()
        props = sorted(self.props.items())
        cases = "\n".join(f"  {shlex.quote(k)}) printf '%s\\n' {shlex.quote(v)} ;;" for k, v in props)
        listing = "\n".join(f"  printf '[%s]: [%s]\\n' {shlex.quote(k)} {shlex.quote(v)}"
                            for k, v in props)
        script = (f"#!/bin/sh\n# getprop of the amc-tf emulated device (written by `amc-tf device emulate`)\n"
                  f"if [ $# -eq 0 ]; then\n{listing}\n  exit 0\nfi\n"
                  f"case \"$1\" in\n{cases}\n  *) printf '%s\\n' \"$2\" ;;\nesac\n")
        tmp = self.bindir / ".getprop.tmp"
        tmp.write_text(script)
        tmp.chmod(0o755)
        tmp.replace(self.bindir / "getprop")

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
