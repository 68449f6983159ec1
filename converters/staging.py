"""The hidden staging directory a conversion writes into before it renames it to OUTDIR.

Its name records who made it: `.OUTDIR.amc-PID-START.RANDOM.tmp` (START: the process's
start time in clock ticks since boot, so a reused pid is not mistaken for the owner). A run
killed by SIGKILL cannot clean up, so every later conversion to the same OUTDIR removes the
staging directories whose owner process is provably gone; others are left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from amc_tf.core.errors import AmcError, OutputExistsError


def _start_time(pid: int) -> int | None:
    """Start time of `pid` (clock ticks since boot, Linux); None when there is no such process;
    0 where /proc does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None
    except (OSError, IndexError, ValueError):
        return None
    try:  # no /proc: fall back to "a process with this pid exists"
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return 0


def _pattern(outdir: Path) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(outdir.name)}\.amc-(\d+)-(\d+)\.[A-Za-z0-9_]+\.tmp$")


def remove_stale(outdir: Path) -> list[Path]:
    """Delete staging directories of earlier conversions to OUTDIR whose process is gone."""
    removed = []
    pattern = _pattern(outdir)
    try:
        entries = list(os.scandir(outdir.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or not entry.is_dir(follow_symlinks=False):
            continue
        pid, start = int(m.group(1)), int(m.group(2))
        now = _start_time(pid)
        if now is None or (now != 0 and now != start):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def make_staging_dir(outdir: Path) -> Path:
    """A fresh staging directory beside OUTDIR, named after this process, with the usual permissions."""
    pid = os.getpid()
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.amc-{pid}-{_start_time(pid) or 0}.", suffix=".tmp",
                                dir=outdir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the result should look like any mkdir
    return tmp


def check_output_path(checkpoint: str | os.PathLike, outdir: Path) -> None:
    """Refuse an OUTDIR whose replacement would delete the input or the working directory."""
    out = Path(os.path.abspath(outdir))
    real_out = out.resolve()
    cwd = Path.cwd().resolve()
    if real_out == Path(real_out.anchor):
        raise AmcError(f"refusing to write to {outdir}: it is the filesystem root")
    if cwd == real_out or real_out in cwd.parents:
        raise AmcError(f"refusing to write to {outdir}: it is or contains the current directory, which "
                       "--force would replace; choose a new directory")
    src = Path(os.path.abspath(checkpoint)).resolve()
    if src == real_out or real_out in src.parents:
        raise AmcError(f"refusing to write to {outdir}: it contains the input {checkpoint}, which "
                       "--force would delete; choose another output directory")


# Everything a conversion writes at the top of OUTDIR (convert, --quantize, --export, --with-preprocessing).
CONVERSION_ENTRIES = frozenset({"report.json", "model.tflite", "model_fp32.tflite", "saved_model", "slim",
                                "model.onnx", "with_preprocessing", "calibration.txt"})


def check_replaceable(outdir: Path) -> None:
    """`--force` replaces an earlier conversion only: a real directory whose report.json is an
    amc-tf report and which holds nothing a conversion does not write. Anything else (a user's
    folder, a conversion the user has added files to, a symlink, a file) is refused."""

    hint = "remove it yourself or choose another -o"
    if outdir.is_symlink() or not outdir.is_dir():
        raise OutputExistsError(f"{outdir} is not a directory written by amc-tf; --force replaces only earlier "
                                f"conversions: {hint}")
    from amc_tf.core.errors import AmcError
    from amc_tf.core.jsonfile import MAX_REPORT_BYTES, load_json

    try:  # bounded, and a FIFO or device named report.json is refused, not read
        report = load_json(outdir / "report.json", MAX_REPORT_BYTES)
        names = sorted(entry.name for entry in os.scandir(outdir))
    except (OSError, ValueError, AmcError):
        report, names = None, []
    if not (isinstance(report, dict) and isinstance(report.get("artifacts"), dict)
            and isinstance(report.get("network"), dict)):
        raise OutputExistsError(f"{outdir} is not an amc-tf output (no amc-tf report.json); --force replaces "
                                f"only earlier conversions: {hint}")
    foreign = [name for name in names if name not in CONVERSION_ENTRIES]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputExistsError(f"{outdir} holds files a conversion did not write ({shown}); --force would "
                                f"delete them: {hint}")
