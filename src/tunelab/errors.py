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


class RunInterrupted(TunelabError):
    """A stop signal (SIGINT, SIGTERM, SIGUSR1) ended training at a step; a checkpoint of that
    step was written (``saved``), so ``--resume`` continues from it."""

    def __init__(self, message: str, step: int, signal_name: str, saved: bool = True):
        super().__init__(message)
        self.step, self.signal_name, self.saved = step, signal_name, saved

    @property
    def exit_code(self) -> int:
        """130 for SIGINT (as a shell reports Ctrl-C), 143 for SIGTERM and SIGUSR1."""
        return 130 if self.signal_name == "SIGINT" else 143
