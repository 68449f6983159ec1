"""What `amc-tf study MODELS...` names: checkpoints, ONNX files, folders of them, or a TOML
list of `[[model]]` entries (`path`, optional `name` and `profile`; paths relative to the
TOML file)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from amc_tf.core.errors import AmcError
from amc_tf.core.profiles import PROFILE_NAMES

MODEL_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar", ".ckpt", ".onnx")
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


class StudyInputError(AmcError):
    """MODELS or an option of the study cannot be used (exit 2)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: str  # absolute
    profile: str | None = None


def model_name(path: str) -> str:
    base = os.path.basename(path)
    for suffix in MODEL_SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)] or base
    return base


def _is_model_file(name: str) -> bool:
    return name.lower().endswith(MODEL_SUFFIXES)


def _check_name(name: str, where: str) -> str:
    if not isinstance(name, str) or not _NAME_OK.match(name) or name in (".", ".."):
        raise StudyInputError(f"{where}: model name {name!r} must be 1-100 letters, digits, '.', '_', '+' or '-'")
    return name


def _from_toml(path: str) -> list[ModelEntry]:
    import tomllib

    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise StudyInputError(f"{path}: not valid TOML ({exc})") from None
    items = data.get("model")
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise StudyInputError(f"{path}: expected one or more [[model]] tables with a path")
    base = os.path.dirname(os.path.abspath(path))
    out = []
    for k, item in enumerate(items, 1):
        unknown = sorted(set(item) - {"path", "name", "profile"})
        if unknown:
            raise StudyInputError(f"{path}: model {k}: unknown key {unknown[0]!r} (path, name, profile)")
        p = item.get("path")
        if not isinstance(p, str) or not p:
            raise StudyInputError(f"{path}: model {k} has no path")
        full = os.path.normpath(os.path.join(base, os.path.expanduser(p)))
        if not os.path.isfile(full):
            raise StudyInputError(f"{path}: model {k}: {full}: no such file")
        profile = item.get("profile")
        if profile is not None and profile not in PROFILE_NAMES:
            raise StudyInputError(f"{path}: model {k}: unknown profile {profile!r} ({', '.join(PROFILE_NAMES)})")
        name = _check_name(item.get("name", model_name(full)), f"{path}: model {k}")
        out.append(ModelEntry(name, full, profile))
    return out


def discover(args: list[str]) -> list[ModelEntry]:
    """The models in command-line order (a folder's files in sorted order); names must be unique."""
    if not args:
        raise StudyInputError("give at least one MODEL (a checkpoint, an ONNX file, a folder of them or a .toml list)")
    models: list[ModelEntry] = []
    for arg in args:
        if os.path.isdir(arg):
            found = sorted(e.path for e in os.scandir(arg) if _is_model_file(e.name) and e.is_file())
            if not found:
                raise StudyInputError(f"{arg}: no checkpoints ({', '.join(MODEL_SUFFIXES)}) in this folder")
            models += [ModelEntry(model_name(p), os.path.abspath(p)) for p in found]
        elif arg.lower().endswith(".toml"):
            if not os.path.isfile(arg):
                raise StudyInputError(f"{arg}: no such file")
            models += _from_toml(arg)
        elif os.path.isfile(arg):
            models.append(ModelEntry(model_name(arg), os.path.abspath(arg)))
        else:
            raise StudyInputError(f"{arg}: no such file or directory")
    seen: dict[str, str] = {}
    for m in models:
        _check_name(m.name, m.path)
        if m.name in seen and seen[m.name] != m.path:
            raise StudyInputError(f"two models are named {m.name} ({seen[m.name]} and {m.path}); "
                                  "list them in a .toml with distinct names")
        seen[m.name] = m.path
    unique = list({m.name: m for m in models}.values())
    return unique
