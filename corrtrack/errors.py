"""The one exception type for expected failures.

The CLI turns a ``CorrtrackError`` into a single line on stderr and a non-zero
exit code; any other exception is a bug and keeps its traceback.
"""


class CorrtrackError(Exception):
    """An expected failure (bad input, missing file, ...). Message: "file: problem"."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
