"""The one error tree of lmforge.

Every error a user can cause (bad input, bad config, unknown names, broken checkpoints) is an
``LMForgeError``; its message says what went wrong, where, and what to do. The CLI prints it as one
line on stderr and exits with status 2.
"""

__all__ = ["LMForgeError", "ConfigError", "DataError", "CheckpointError", "UnknownModelError"]


class LMForgeError(Exception):
    """Base class of every error lmforge raises on purpose."""


class ConfigError(LMForgeError):
    """A configuration value is missing, unknown or out of range."""


class DataError(LMForgeError):
    """Input text or data cannot be used (missing, empty, not UTF-8, malformed)."""


class CheckpointError(LMForgeError):
    """A model file or folder is missing, corrupt or of the wrong kind."""


class UnknownModelError(LMForgeError):
    """A model family name that is not in the registry."""
