"""Errors a user can act on. The CLI (amc_tf/cli/app.py, the one boundary) prints them as one
line `error: ...` and exits with their code: 2 bad input, 1 a gate failed, 3 a run failed."""


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


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: raised by the CLI's signal handlers so every `finally`
    (temp directories, worker processes) runs. A BaseException, like KeyboardInterrupt, so
    `except Exception` does not swallow it. Exit 128 + the signal number (130, 143)."""

    def __init__(self, signum: int):
        import signal

        self.signum = int(signum)
        self.signame = signal.Signals(self.signum).name
        self.exit_code = 128 + self.signum
        super().__init__(self.signame)


class ModelFileError(AmcError):
    """A model file (.tflite, SavedModel) is missing, corrupt or not loadable."""


class ModelCrashedError(ModelFileError):
    """LiteRT crashed (a signal) or exited on the model, in the child process it runs in. Exit code 2."""


class ModelHangError(AmcError):
    """LiteRT made no progress on the model within AMC_TF_LITERT_TIMEOUT; its process was
    killed. Exit code 3 (as a benchmark run that timed out)."""

    exit_code = 3
