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


import numbers  # noqa: E402

_PLAIN = (bool, int, float, type(None))


def _literal(value, depth: int = 0) -> str:
    """The literal of plain data; other objects by type name only (their ``repr`` never runs)."""
    if isinstance(value, str):
        return ascii(value)
    if type(value) in _PLAIN:
        return repr(value)
    if isinstance(value, numbers.Integral):  # numpy / torch integer scalars, as builtins
        return repr(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    if depth < 3 and type(value) in (list, tuple):
        inner = ', '.join(_literal(v, depth + 1) for v in value[:20])
        more = ', ...' if len(value) > 20 else ''
        return f'[{inner}{more}]' if type(value) is list else \
            f'({inner}{more}{"," if len(value) == 1 else ""})'
    if depth < 3 and type(value) is dict:
        items = list(value.items())
        inner = ', '.join(f'{_literal(k, depth + 1)}: {_literal(v, depth + 1)}'
                          for k, v in items[:20])
        return '{' + inner + (', ...' if len(items) > 20 else '') + '}'
    return f'<{type(value).__name__}>'


def clip(value, limit: int = 60, quote: bool = True) -> str:
    """A short printable ASCII form of ``value`` for an error message.

    Strings appear escaped to ASCII (quoted unless ``quote=False``); numbers, ``None`` and lists,
    tuples and dicts of them as their literal; any other object by its type name only, so that
    no ``__repr__`` of an object a file or config built ever runs.  Cut to ``limit`` characters.
    """
    text = ascii(str(value))[1:-1] if isinstance(value, str) and not quote else _literal(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'
