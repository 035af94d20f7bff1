"""The one exception type for bad user input; the CLI prints it as one line and exits 2."""


class NightrecError(Exception):
    """A user error: a bad path, a missing column, an unparseable value, an invalid setting.

    The message names the file, the column and what was expected, and is shown as is.
    """


class InputError(NightrecError):
    """Bad input data or a bad path to it."""


class ConfigError(NightrecError):
    """An invalid configuration value, from a file, an environment variable or a flag."""


# OS errors a person fixes (a permission, a path): retrying cannot help, and the CLI says them in one line.
SETUP_ERRORS = (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError)
