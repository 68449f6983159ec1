"""Errors a user can act on. The CLI prints them as one line and exits with 2."""


class AmcError(Exception):
    """Base class: bad input or a request that cannot be met. Exit code 2."""

    exit_code = 2


class CheckpointError(AmcError):
    """The file is missing, not a checkpoint, truncated or corrupt."""


class UnsafePickleError(CheckpointError):
    """The pickle asks for something a state dict never needs; it was not executed."""


class ArchitectureError(AmcError):
    """The tensors do not describe a supported MobileNetV1/V2, or contradict --profile."""


class OutputExistsError(AmcError):
    """The output exists and --force was not given."""


class DeviceError(AmcError):
    """No device, unauthorized, offline, ambiguous device, missing adb or binary."""


class RunFailedError(AmcError):
    """A benchmark run started but failed or was cut short (partial results are kept). Exit code 3."""

    exit_code = 3
