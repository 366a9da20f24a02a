"""Errors the command line turns into a one-line message.

``UsageError`` is bad input (a wrong value, a missing file): the CLI prints it and exits with status 2.
``EnvironmentFailure`` is the machine refusing (no space left, a read-only folder): one line, status 1.
Anything else that escapes is a failure of ours and exits with status 1.
"""


class UsageError(ValueError):
    """Bad input from the user: the message names the value and what would be accepted."""


class ArchError(UsageError):
    """An arch that is not a point of its space (wrong field, value or length)."""


class SpaceError(UsageError):
    """A search-space file that cannot be read or is inconsistent."""


class EnvironmentFailure(RuntimeError):
    """The environment, not the input, stops the work (disk full, read-only or unwritable folder)."""
