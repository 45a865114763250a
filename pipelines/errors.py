"""The one exception type for mistakes a user can fix (bad path, bad class name, bad file)."""


class GanpipeError(ValueError):
    """A user-facing error: its message is one line that says what is wrong and where.

    The CLI prints it without a traceback and exits non-zero.
    """
