"""The one error type tunelab raises for problems a user can act on."""

from __future__ import annotations


class TunelabError(Exception):
    """A problem with the user's input, environment or run directory.

    The message is written for the user: it names what is wrong and what is allowed.
    The CLI prints it as one line and exits non-zero; the Python API lets it propagate.
    """


class ConfigError(TunelabError):
    """A config value is missing, unknown or out of range."""


class DataError(TunelabError):
    """A data file, column, split or row cannot be used."""


class ModelError(TunelabError):
    """A model name cannot be resolved or loaded."""


class RunDirError(TunelabError):
    """A run directory is missing, incomplete or would be overwritten."""
