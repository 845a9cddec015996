"""nfkit's user-error hierarchy.

Library code raises these for problems caused by the user's input (a missing file, a corrupt
artifact, an option out of range, an incompatible initialization). The CLI turns exactly these
into one ``error: ...`` line and exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class NfkitError(Exception):
    """Base of every error nfkit reports to the user as one line."""


class UserError(NfkitError):
    """Bad input or options given by the user."""


class ConfigError(UserError):
    """An invalid configuration value (preset, ``--set key=value``, option out of range)."""


class IncompatibleError(UserError):
    """Inputs that exist and are well formed but cannot be combined (another init, another
    encoder, another CLIP model, an architecture an artifact was not trained for)."""


__all__ = ["NfkitError", "UserError", "ConfigError", "IncompatibleError"]
