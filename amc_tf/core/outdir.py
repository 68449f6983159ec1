"""Read a conversion OUTDIR back. Every tool that takes an OUTDIR (eval, parity, diff,
compare) finds its files through `OutDir`: the deployable model.tflite, its fp32 twin when
quantized, the SavedModel, the source checkpoint if it is still there and unchanged, and the
Network itself (report.json's network description + the slim checkpoint's weights), so the
graph can be rebuilt without the original checkpoint."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amc_tf.core.errors import AmcError, OutputExistsError
from amc_tf.core.fileutil import sha256_file
from amc_tf.core.netspec import Network, NetSpec


@dataclass
class OutDir:
    path: Path
    report: dict

    @property
    def tflite(self) -> Path:
        """The deployable model.tflite (quantized when the conversion was)."""
        return self.path / self.report.get("artifacts", {}).get("tflite", {}).get("path", "model.tflite")

    @property
    def quantization_mode(self) -> str:
        return self.report.get("quantization", {}).get("mode", "fp32")

    @property
    def tflite_fp32(self) -> Path:
        """The fp32 .tflite: model_fp32.tflite beside a quantized model, else model.tflite itself."""
        fp32 = self.report.get("artifacts", {}).get("tflite_fp32")
        return self.path / fp32["path"] if fp32 else self.tflite

    @property
    def saved_model(self) -> Path:
        return self.path / self.report.get("artifacts", {}).get("saved_model", {}).get("path", "saved_model")

    @property
    def slim_prefix(self) -> Path:
        return self.path / self.report.get("artifacts", {}).get("slim_checkpoint", {}).get("prefix", "slim/model.ckpt")

    @property
    def spec(self) -> NetSpec:
        return NetSpec.from_dict(self.report["network"])

    @property
    def source_file(self) -> str | None:
        """The converted checkpoint, if it is still where it was converted from. report.json
        records the resolved path; an older report's relative path is tried as typed (from the
        current folder) and from the OUTDIR's parent folder."""
        src = self.report.get("source", {}).get("file")
        if not src:
            return None
        candidates = [src] if os.path.isabs(src) else [src, os.path.join(os.fspath(self.path.parent), src)]
        return next((c for c in candidates if os.path.isfile(c)), None)

    def pytorch_checkpoint(self) -> tuple[str | None, str | None]:
        """(the PyTorch checkpoint this OUTDIR was converted from, None) when it is still at the
        recorded path with the recorded sha256; else (None, why not)."""
        source = self.report.get("source", {})
        if source.get("frontend") != "pytorch":
            return None, f"{source.get('frontend')} input is not a PyTorch checkpoint"
        return self.source_checkpoint()

    def source_checkpoint(self) -> tuple[str | None, str | None]:
        """(the file this OUTDIR was converted from, PyTorch or ONNX, None) when it is still at
        the recorded path with the recorded sha256; else (None, why not)."""
        source = self.report.get("source", {})
        src = self.source_file
        if src is None:
            return None, "the converted checkpoint is no longer at the path report.json records"
        if source.get("sha256") not in (None, sha256_file(src)):
            return None, f"{src} changed since the conversion"
        return src, None

    def network(self) -> Network:
        """The Network rebuilt from the slim checkpoint (needs TensorFlow)."""
        import tensorflow as tf

        spec = self.spec
        try:
            reader = tf.train.load_checkpoint(os.fspath(self.slim_prefix))
        except Exception as exc:  # NotFoundError, DataLossError...
            raise AmcError(f"{self.path}: cannot read the slim checkpoint {self.slim_prefix}: {exc}") from None
        weights = {}
        for name in spec.var_shapes():
            if not reader.has_tensor(name):
                raise AmcError(f"{self.path}: slim checkpoint lacks {name}")
            weights[name] = np.asarray(reader.get_tensor(name), np.float32)
        network = Network(spec, weights, {"file": os.fspath(self.path), "frontend": "outdir"})
        try:
            network.validate()
        except ValueError as exc:
            raise AmcError(f"{self.path}: report.json and the slim checkpoint disagree: {exc}") from None
        return network


def read_report(report_path: Path) -> dict:
    """report.json, bounded and validated against jsonfile.REPORT_SCHEMA; its artifact paths must
    stay inside the OUTDIR (relative, no '..'). JsonFileError (exit 2) naming the file and field."""
    from amc_tf.core.jsonfile import MAX_REPORT_BYTES, REPORT_SCHEMA, JsonFileError, load_json

    report = load_json(report_path, MAX_REPORT_BYTES, REPORT_SCHEMA)
    for key, entry in report.get("artifacts", {}).items():
        if not isinstance(entry, dict):
            continue
        for field in ("path", "prefix"):
            rel = entry.get(field)
            if isinstance(rel, str) and (os.path.isabs(rel) or ".." in Path(rel).parts or "\0" in rel):
                raise JsonFileError(f"{report_path}: artifacts.{key}.{field}: {rel!r} is not a path inside the "
                                    "output directory")
    return report


def is_outdir(path: str | os.PathLike) -> bool:
    return (Path(path) / "report.json").is_file()


def read_outdir(path: str | os.PathLike) -> OutDir:
    path = Path(path)
    report_path = path / "report.json"
    if not os.path.lexists(report_path):
        raise AmcError(f"{path}: not a conversion output directory (no report.json)")
    report = read_report(report_path)
    try:
        NetSpec.from_dict(report["network"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AmcError(f"{report_path}: unreadable report ({type(exc).__name__}: {exc})") from None
    out = OutDir(path, report)
    if not out.tflite.is_file():
        raise AmcError(f"{path}: no {out.tflite.name}")
    if not out.tflite_fp32.is_file():
        raise AmcError(f"{path}: quantized, but its fp32 model {out.tflite_fp32.name} is missing")
    return out


# --- writing an OUTDIR: claim it, hold it, publish into it, and on failure remove only what we made ---

class OutdirBusyError(AmcError):
    """Another amc-tf process holds the OUTDIR (its lock). Exit code 2."""


def _entries(fd: int) -> dict[str, tuple[int, int]]:
    """{name: (device, inode)} of a folder's entries, read through its fd (links not followed)."""
    found = {}
    for name in os.listdir(fd):
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        found[name] = (st.st_dev, st.st_ino)
    return found


def _shown(names) -> str:
    names = sorted(names)
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


class OutdirClaim:
    """Ownership of an output folder for the length of a command.

    `acquire()` creates OUTDIR with mkdir (its missing parents too) or, when it exists, takes it only
    if it is an empty real folder or, with `force`, one `replaceable(path)` accepts (it raises
    otherwise). Either way it then holds an exclusive flock on the folder itself (no lock file is
    left in it) until `release()`: a second command on the same OUTDIR fails at once with
    OutdirBusyError (exit 2), it never shares or replaces the first one's output.

    `publish(staging)` moves the finished entries of a staging folder (same filesystem) into OUTDIR
    by rename, report-like `last` entries last. It first checks OUTDIR still holds exactly what it
    held when claimed (same names, same inodes): anything another process put there meanwhile is
    left alone and nothing is published. With `force` the earlier entries are moved aside and
    deleted only after the new ones are in; a failure midway puts them back.

    `release(ok=False)` removes only what the claim created: OUTDIR and its parents, with rmdir,
    which removes nothing but an empty folder (a file someone else put there keeps it)."""

    def __init__(self, path: str | os.PathLike, *, force: bool = False, replaceable=None,
                 hint: str = "choose another -o"):
        self.path = Path(path)
        self.force = force
        self.replaceable = replaceable
        self.hint = hint
        self.fd: int | None = None
        self.created: list[Path] = []  # folders this claim made, outermost first
        self.before: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> "OutdirClaim":
        self.acquire()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release(ok=exc_type is None)

    def acquire(self) -> None:
        import fcntl

        path = self.path
        missing = []
        parent = path.parent
        while not os.path.lexists(parent) and parent != parent.parent:
            missing.append(parent)
            parent = parent.parent
        for folder in reversed(missing):
            try:
                os.mkdir(folder)
                self.created.append(folder)
            except FileExistsError:
                pass
            except OSError as exc:
                self.release()
                raise AmcError(f"cannot create {folder}: {exc.strerror or exc}") from None
        try:
            os.mkdir(path)
            made = True
        except FileExistsError:
            made = False
        except OSError as exc:
            self.release()
            raise AmcError(f"cannot create {path}: {exc.strerror or exc}") from None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            self.release()
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                if not self.force:
                    raise OutputExistsError(f"{path} exists; pass --force to replace it") from None
                if self.replaceable is not None:
                    self.replaceable(path)
                raise OutputExistsError(f"{path} is not a directory written by amc-tf (a symlink or a file); "
                                        f"--force replaces only an earlier output: remove it yourself or "
                                        f"{self.hint}") from None
            raise AmcError(f"cannot open {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            st, now = os.fstat(fd), os.lstat(path)
            if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):  # removed or swapped before we locked it
                raise BlockingIOError
        except BlockingIOError:
            os.close(fd)
            self.release()
            raise OutdirBusyError(f"{path} is being written by another amc-tf process; wait for it to "
                                  f"finish or {self.hint}") from None
        except FileNotFoundError:
            os.close(fd)
            self.release()
            raise OutdirBusyError(f"{path} was removed by another process while it was claimed; try again")
        self.fd = fd
        if made:
            self.created.append(path)
        self.before = _entries(fd)
        if self.before and not made:
            if not self.force:
                self.release()
                raise OutputExistsError(f"{path} exists; pass --force to replace it")
            if self.replaceable is not None:
                try:
                    self.replaceable(path)
                except BaseException:
                    self.release()
                    raise

    def check_unchanged(self) -> None:
        now = _entries(self.fd)
        changed = [name for name in set(now) | set(self.before) if now.get(name) != self.before.get(name)]
        if changed:
            raise OutputExistsError(f"{self.path} changed while this command ran: another process wrote "
                                    f"{_shown(changed)} there; nothing was published and its files were left "
                                    f"as they are: {self.hint}")

    def publish(self, staging: str | os.PathLike, last: tuple[str, ...] = ("report.json",)) -> None:
        """Move staging's entries into OUTDIR (see the class doc); staging is removed when empty."""
        from amc_tf.core.fileutil import publish

        assert self.fd is not None, "publish() before acquire()"
        staging = Path(staging)
        self.check_unchanged()
        sfd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        trash = trash_fd = None
        moved_old: list[str] = []
        moved_new: list[str] = []
        try:
            names = sorted(os.listdir(sfd), key=lambda n: (n in last, n))
            if self.before:
                trash = Path(str(staging)[: -len(".tmp")] + "_old.tmp" if str(staging).endswith(".tmp")
                             else str(staging) + "_old")
                os.mkdir(trash, 0o700)
                trash_fd = os.open(trash, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
                for name in sorted(self.before):
                    publish(name, name, src_dir_fd=self.fd, dst_dir_fd=trash_fd)
                    moved_old.append(name)
            for name in names:
                publish(name, name, src_dir_fd=sfd, dst_dir_fd=self.fd)
                moved_new.append(name)
        except BaseException:
            for name in reversed(moved_new):  # put everything back as it was
                with contextlib.suppress(OSError):
                    publish(name, name, src_dir_fd=self.fd, dst_dir_fd=sfd)
            for name in reversed(moved_old):
                with contextlib.suppress(OSError):
                    publish(name, name, src_dir_fd=trash_fd, dst_dir_fd=self.fd)
            if trash is not None:
                with contextlib.suppress(OSError):
                    os.rmdir(trash)
            raise
        finally:
            os.close(sfd)
            if trash_fd is not None:
                os.close(trash_fd)
        self.before = _entries(self.fd)
        self.created = []  # published: OUTDIR is the result now, whatever happens next
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(staging)

    def release(self, ok: bool = False) -> None:
        """Unlock; unless `ok`, remove the (still empty) folders this claim created."""
        if not ok:
            for folder in reversed(self.created):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)  # only ever removes an empty folder
        self.created = []
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
