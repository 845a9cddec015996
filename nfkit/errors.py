"""nfkit's user-error hierarchy.

Library code raises these for problems caused by the user's input (a missing file, a corrupt
artifact, an option out of range, an incompatible initialization). The CLI turns exactly these
into one ``error: ...`` line and exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class NfkitError(Exception):
    """Base of every error nfkit reports to the user as one line."""


class UserError(NfkitError, ValueError):
    """Bad input or options given by the user.

    Also a ``ValueError``, so that Python callers catching ``ValueError`` around a library call
    keep working; the CLI still reports only :class:`NfkitError` (and the file errors listed in
    :data:`FILE_ERRORS`) as one line, never a plain ``ValueError`` raised by a bug.
    """


class ConfigError(UserError):
    """An invalid configuration value (preset, ``--set key=value``, option out of range)."""


class IncompatibleError(UserError):
    """Inputs that exist and are well formed but cannot be combined (another init, another
    encoder, another CLIP model, an architecture an artifact was not trained for)."""


#: OS errors about a path the user named (their message names the file): reported as one line.
FILE_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)

#: everything the CLI turns into ``error: ...`` and exit code 1
REPORTED_ERRORS: tuple[type[BaseException], ...] = (NfkitError, *FILE_ERRORS)


__all__ = [
    "FILE_ERRORS",
    "REPORTED_ERRORS",
    "ConfigError",
    "IncompatibleError",
    "NfkitError",
    "UserError",
]
