"""One error family for everything a user can get wrong (DESIGN.md section 1).

Every error caused by user input is a ``UserError`` (a ``ValueError``): its message names the
argument or key, the value and what is allowed. The CLI prints any ``UserError`` as one line,
``vitaccel CMD: error: ...``, with exit status 2; every other exception is a bug and keeps its
traceback. The kinds say which part of vitaccel refused the input. Imports nothing.
"""


class UserError(ValueError):
    """Bad input from the user (argument, config, file, model or data); never a bug in vitaccel."""


class ConfigError(UserError):
    """An invalid config: the message names the key, the value and what is allowed."""


class DataError(UserError):
    """Missing, empty or unreadable data; the message names the path or option and the fix."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, of another version or not a vitaccel checkpoint."""


class EmulateError(UserError):
    """A model, config, calibration or option that cannot be emulated; the message says why."""


class HardwareError(UserError):
    """A config or option the circuit generators, simulator or synthesis cannot take."""


__all__ = ["CheckpointError", "ConfigError", "DataError", "EmulateError", "HardwareError", "UserError"]
