"""The one exception type for bad user input; the CLI prints it as one line and exits 2."""

import errno


class NightrecError(Exception):
    """A user error: a bad path, a missing column, an unparseable value, an invalid setting.

    The message names the file, the column and what was expected, and is shown as is.
    """


class InputError(NightrecError):
    """Bad input data or a bad path to it."""


class ConfigError(NightrecError):
    """An invalid configuration value, from a file, an environment variable or a flag."""


class TooLargeError(ConfigError):
    """A model family refuses a catalogue too large for it; ``model.family: auto`` skips that candidate."""


# OS errors a person fixes (a permission, a path): retrying cannot help, and the CLI says them in one line.
SETUP_ERRORS = (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError)
# The same, where Python raises a plain OSError: a read-only file system, and a folder mounted
# apart from the data directory (the atomic renames of a publish cannot cross file systems).
SETUP_ERRNOS = frozenset({errno.EROFS, errno.EXDEV})


def is_setup_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an OS error of the set-up (``SETUP_ERRORS``, ``SETUP_ERRNOS``)."""
    return isinstance(exc, SETUP_ERRORS) or (isinstance(exc, OSError) and exc.errno in SETUP_ERRNOS)
