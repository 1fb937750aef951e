"""The error hierarchy. Every failure a user can cause is a :class:`SlimkitError` subclass.

The CLI turns any ``SlimkitError`` into a one-line message and exit code 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class SlimkitError(Exception):
    """Base class of every error slimkit raises for bad input or an unusable environment."""


class ConfigError(SlimkitError, ValueError):
    """A config value is out of range, of the wrong type, or an unknown key was given."""


class ModelLoadError(SlimkitError):
    """A model directory is missing, incomplete, corrupt or in a refused format (pickle)."""


class UnsupportedArchitectureError(ModelLoadError):
    """The model's architecture has no adapter; the message lists the supported ones."""


class DataError(SlimkitError):
    """A data source is missing, empty, malformed or too short for what was asked."""


class TargetError(SlimkitError):
    """A ``targets`` / ``ignore`` pattern matched no module, or selected an unsupported one."""


class CheckpointError(SlimkitError):
    """A training checkpoint is missing, corrupt or does not match the run being resumed."""


class RegistryError(SlimkitError, KeyError):
    """Nothing is registered for the requested config type or name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
