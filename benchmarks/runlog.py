"""Where runs leave their traces: `LOGDIR/<name>_run<k>.txt` (raw benchmark_model-format
output, one file per run, written atomically) and `LOGDIR/<name>.bench.json` (the
manifest: protocol, target, expected runs, per-run status and device state).

`logs summarize` needs only the .txt files; the manifest lets it also say which runs
are missing and why.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amc_tf.core.errors import AmcError, OutputExistsError

RUN_FILE = re.compile(r"^(?P<name>.+)_run(?P<k>\d+)\.txt$")


@dataclass
class RunRecord:
    """What happened to one run. status: ok | failed | no_result | lost | missing."""

    k: int
    status: str
    log: str | None = None
    inference_avg_us: float | None = None
    count: int | None = None
    error: str | None = None
    returncode: int | None = None
    duration_s: float | None = None
    device_before: dict | None = None
    device_after: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class BenchRecord:
    """One model benchmarked on one target: the manifest's content."""

    name: str
    model: str
    model_sha256: str
    target: str
    protocol: dict
    runner: dict = field(default_factory=dict)
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return len(self.runs) == self.protocol["repeats"] and all(r.status == "ok" for r in self.runs)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["expected_runs"] = self.protocol["repeats"]
        d["ok"] = self.ok
        return d


def run_status(parsed, code: int | None, output: str) -> tuple[str, str | None]:
    """A run's status and error from its parsed log and the tool's exit code.

    A non-zero exit fails the run even when the log looks complete; a non-zero exit with
    no result in the log (wrong architecture, `Permission denied`, a crash) is reported
    with the last line the tool printed.
    """
    status, error = parsed.status, parsed.error
    if code in (None, 0):
        return status, error
    if status == "ok":
        return "failed", f"benchmark_model exited with code {code}"
    if status == "no_result":
        from amc_tf.benchmarks.loglines import last_line

        tail = last_line(output)  # looked for in the output's end only: it may be 64 MiB
        return "failed", f"benchmark_model exited with code {code}" + (f": {tail}" if tail else "")
    return status, error


NAME_PUNCTUATION = "._@+-"
MAX_NAME_BYTES = 120  # leaves room for _run<k>.txt and .bench.json within a file name's 255 bytes


def _name_ok(name: str) -> bool:
    return (bool(name) and all(ch.isalnum() or ch in NAME_PUNCTUATION for ch in name) and name[0] not in ".-"
            and not RUN_FILE.match(name + ".txt") and len(name.encode("utf-8")) <= MAX_NAME_BYTES)


def check_name(name: str) -> str:
    """A --name the user gave: refused, naming --name, when it cannot be a log file name."""
    if not _name_ok(name):
        raise AmcError(
            f"--name {name!r} is not usable in a log file name (non-empty; letters of any script, digits, "
            f". _ - + @ only, not starting with '.' or '-', at most {MAX_NAME_BYTES} bytes, and it must not "
            "itself end in _run<k>)"
        )
    return name


def safe_name(raw: str) -> str:
    """A log name derived from any folder or file name (spaces, slashes, any script): letters
    and digits of any script and . _ @ + - are kept, every other run of characters becomes
    one '_'; a leading '.' or '-' is dropped, a trailing _run<k> gets a '_', and a name
    longer than MAX_NAME_BYTES is cut. Never fails: 'model' when nothing is left."""
    import unicodedata

    out, gap = [], False
    for ch in unicodedata.normalize("NFC", raw):
        if ch.isalnum() or ch in NAME_PUNCTUATION:
            out.append(ch)
            gap = False
        elif not gap:
            out.append("_")
            gap = True
    name = "".join(out).lstrip(".-")
    while len(name.encode("utf-8")) > MAX_NAME_BYTES:
        name = name[:-1]
    if RUN_FILE.match(name + ".txt"):
        name += "_"
    return name if _name_ok(name) else "model"


def log_path(logdir: Path, name: str, k: int) -> Path:
    return Path(logdir) / f"{name}_run{k}.txt"


def manifest_path(logdir: Path, name: str) -> Path:
    return Path(logdir) / f"{name}.bench.json"


def existing_logs(logdir: Path, name: str) -> list[Path]:
    logdir = Path(logdir)
    if not logdir.is_dir():
        return []
    out = []
    for p in logdir.iterdir():
        m = RUN_FILE.match(p.name)
        if m and m.group("name") == name:
            out.append(p)
    return sorted(out)


def claim_logdir(logdir: Path, names: list[str], force: bool, staged: bool = False) -> "LogClaim | None":
    """Refuse to mix new runs with old logs of the same name unless --force, in which
    case the old logs (and partial logs and manifest) of those names are removed - or, with
    `staged`, moved aside into LOGDIR/.replaced-*/ and a LogClaim returned: its commit()
    drops them once the new runs have finished, its rollback() (an error, an interrupt)
    puts them back and removes a log directory this call created if it is left empty."""
    logdir = Path(logdir)
    clash = [p for n in names for p in existing_logs(logdir, n)]
    if clash and not force:
        raise OutputExistsError(
            f"{len(clash)} log(s) already in {logdir} for {', '.join(sorted({RUN_FILE.match(p.name)['name'] for p in clash}))} "
            f"(e.g. {clash[0].name}); pass --force to replace them or choose another --logdir/--name"
        )
    created = not logdir.exists()
    try:
        logdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AmcError(f"cannot create log directory {logdir}: {exc.strerror}") from None
    locks = []
    if staged:
        try:
            locks = [_name_lock(logdir, n) for n in names]
        except BaseException:
            for lk in locks:
                lk.close()
            if created:
                try:
                    logdir.rmdir()
                except OSError:
                    pass
            raise
    old = [p for n in names for p in _traces(logdir, n)] if force else []
    if not staged:
        for p in old:
            p.unlink()
        return None
    claim = LogClaim(logdir, names, created)
    claim.locks = locks
    if old:
        claim.stash = Path(tempfile.mkdtemp(prefix=".replaced-", dir=logdir))
        for p in old:
            os.replace(p, claim.stash / p.name)
    return claim


def _name_lock(logdir: Path, name: str):
    """Hold (LOGDIR, name) while this bench runs (fileutil.hold_name): a second bench of the same
    name into the same LOGDIR fails at once (exit 2) instead of replacing the first one's logs."""
    from amc_tf.core.fileutil import hold_name

    try:
        return hold_name(logdir, name, "bench")
    except BlockingIOError:
        raise OutputExistsError(f"another amc-tf bench is writing logs named {name} in {logdir}; wait for it "
                                "to finish or choose another --name/--logdir") from None


def _traces(logdir: Path, name: str) -> list[Path]:
    """The run logs, partial logs and manifest of one name."""
    mp = manifest_path(logdir, name)
    return (existing_logs(logdir, name) + sorted(logdir.glob(f"{glob_escape(name)}_run*.partial.txt"))
            + ([mp] if mp.exists() else []))


class LogClaim:
    """Old logs set aside by claim_logdir(staged=True) until the new runs have finished; as a
    context manager: `with claim_logdir(..., staged=True): <the runs>`."""

    def __init__(self, logdir: Path, names: list[str], created: bool):
        self.logdir, self.names, self.created = logdir, list(names), created
        self.stash: Path | None = None
        self.locks: list = []  # per-name locks (_name_lock), released when the claim ends

    def _unlock(self) -> None:
        for lk in self.locks:
            if lk is not None:
                lk.close()
        self.locks = []

    def __enter__(self) -> "LogClaim":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Leaving the block normally commits; an exception (an interrupt too) rolls back."""
        try:
            if exc_type is None:
                self.commit()
            else:
                self.rollback()
        finally:
            self._unlock()

    def commit(self) -> None:
        if self.stash is not None:
            import shutil

            shutil.rmtree(self.stash, ignore_errors=True)
            self.stash = None

    def rollback(self) -> None:
        """Back to before: with old logs set aside, the new runs' traces go and the old come back."""
        if self.stash is not None:
            for n in self.names:
                for p in _traces(self.logdir, n):
                    p.unlink(missing_ok=True)
            for p in sorted(self.stash.iterdir()):
                os.replace(p, self.logdir / p.name)
            self.stash.rmdir()
            self.stash = None
        if self.created:
            try:
                self.logdir.rmdir()  # only when empty
            except OSError:
                pass


def glob_escape(s: str) -> str:
    return re.sub(r"([*?\[\]])", r"[\1]", s)


def atomic_write(path: Path, data: str | bytes, overwrite: bool = True) -> None:
    """amc_tf.core.fileutil.write_file (a temp file beside `path`, fsynced, renamed; never written
    through a link) with overwriting on by default: without `overwrite`, FileExistsError if `path`
    exists by then, and it is left as it is."""
    from amc_tf.core.fileutil import write_file

    write_file(path, data, overwrite=overwrite)


def write_manifest(logdir: Path, record: BenchRecord) -> Path:
    p = manifest_path(logdir, record.name)
    atomic_write(p, json.dumps(record.as_dict(), indent=2) + "\n")
    return p


def read_manifest(logdir: Path, name: str) -> dict | None:
    """The manifest of `name`, None when there is none; JsonFileError (exit 2, naming the file
    and the field) when it is not a regular file, too large, not JSON or of the wrong shape."""
    from amc_tf.core.jsonfile import MANIFEST_SCHEMA, MAX_MANIFEST_BYTES, load_json

    p = manifest_path(logdir, name)
    if not p.exists() and not p.is_symlink():
        return None
    return load_json(p, MAX_MANIFEST_BYTES, MANIFEST_SCHEMA)


def check_model(path: str | Path) -> Path:
    """A readable TFLite flatbuffer (file identifier `TFL3` at byte 4), else AmcError."""
    p = Path(path)
    if not p.exists():
        raise AmcError(f"model not found: {p}")
    if not p.is_file():
        raise AmcError(f"model is not a file: {p}")
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise AmcError(f"cannot read model {p}: {exc.strerror}") from None
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise AmcError(f"not a TFLite model (no TFL3 flatbuffer identifier): {p}{_convert_hint(p, head)}")
    return p


def _convert_hint(p: Path, head: bytes) -> str:
    """A checkpoint or ONNX model given to bench: say how to get a .tflite from it."""
    name = p.name.lower()
    checkpoint = name.endswith((".pth", ".pth.tar", ".pt", ".tar", ".ckpt")) or head[:2] == b"PK" or head[:2] == b"\x80\x02"
    if checkpoint or name.endswith(".onnx"):
        kind = "an ONNX model" if name.endswith(".onnx") else "a PyTorch checkpoint"
        return f"; it looks like {kind}: convert it first (amc-tf convert {p} -o OUTDIR), then bench OUTDIR"
    return ""
