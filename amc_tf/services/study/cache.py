"""The study's content-keyed cache: one JSON file per finished task under
STUDYDIR/.study/cache/, written atomically (temp file, fsync, rename) only once the task's
artifacts are in place; a file that does not parse is ignored (recomputed)."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

from amc_tf.benchmarks.runlog import atomic_write
from amc_tf.core.errors import OutputExistsError

MARKER = "study.marker"


class Cache:
    def __init__(self, studydir: Path):
        self.root = Path(studydir) / ".study"
        self.dir = self.root / "cache"

    def get(self, key: str) -> dict | None:
        try:
            data = json.loads((self.dir / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("key") == key else None

    def put(self, key: str, value: dict) -> None:
        atomic_write(self.dir / f"{key}.json", json.dumps({"key": key, **value}) + "\n")

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)


def claim(studydir: Path, force: bool) -> Cache:
    """STUDYDIR: new, empty, or an earlier study's (resumed; --force recomputes everything).
    Any other non-empty folder is refused without --force."""
    studydir = Path(studydir)
    cache = Cache(studydir)
    ours = (cache.root / MARKER).is_file()
    if studydir.exists() and not studydir.is_dir():
        raise OutputExistsError(f"-o {studydir} exists and is not a folder")
    if studydir.is_dir() and not ours and any(studydir.iterdir()) and not force:
        raise OutputExistsError(f"-o {studydir} exists and is not a study folder; pass --force to write into it")
    cache.dir.mkdir(parents=True, exist_ok=True)
    if force:
        cache.clear()
    atomic_write(cache.root / MARKER, "amc-tf study\n")
    return cache


def place_tar(data: bytes, outdir: Path) -> None:
    """Unpack a task's OUTDIR tar beside `outdir`, then move it into place (nothing half-written)."""
    import io

    outdir.parent.mkdir(parents=True, exist_ok=True)
    for stale in outdir.parent.glob(f".{outdir.name}.tmp-*"):  # left by a study that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = outdir.with_name(f".{outdir.name}.tmp-{os.getpid()}")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            tar.extractall(tmp, filter="data")
        if outdir.exists():
            shutil.rmtree(outdir)
        os.replace(tmp, outdir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_files(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        atomic_write(folder / os.path.basename(name), text)
