"""The one error type of ``vitaccel.data``: bad or missing data, reported to users without a traceback."""


class DataError(ValueError):
    """Missing, empty or unreadable data; the message names the path or option and the fix."""

    user_error = True
