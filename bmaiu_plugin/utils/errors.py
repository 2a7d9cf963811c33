"""Errors the plugin raises for bad user input.

Every error here carries one message that names the problem and what to do; the plugin's tools
(``tools/train.py``, ``tools/test.py``, ...) print it as a single line and exit with status 2
instead of a traceback.
"""


class BMAIUError(Exception):
    """Base class: a problem with the user's input, not a bug in the plugin."""


class ConfigValueError(BMAIUError, ValueError):
    """A config value that cannot work (a trigger larger than the image, a ratio of 0, ...)."""


class DatasetNotFoundError(BMAIUError, FileNotFoundError):
    """The dataset is not where the config or ``BMAIU_DATA_ROOT`` says."""


class CheckpointError(BMAIUError, RuntimeError):
    """A checkpoint is missing, malformed, unsafe, or does not match the model."""


class UnsafeFileError(BMAIUError):
    """A file names code to run when unpickled (a global outside the allow-list); refused."""


class UnsafeCheckpointError(CheckpointError, UnsafeFileError):
    """A checkpoint would run code when unpickled; it is refused."""


class DatasetFileError(BMAIUError, ValueError):
    """A dataset file exists but is truncated, corrupt or not what the dataset holds."""


class WorkDirError(BMAIUError):
    """The work dir cannot hold the run (a file, not writable, or an earlier run's checkpoints)."""
