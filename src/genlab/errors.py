"""User-facing errors.

A :class:`GenlabError` is a problem with what the user asked for (unknown data set, missing
checkpoint, wrong image size, ...). The CLI prints its message as one line and exits with
status 2, without a traceback; any other exception is a bug and keeps its traceback.
"""


class GenlabError(Exception):
    """A clear, one-line problem with the user's input or files."""
