"""The one error type users see: a bad input or a bad file, named in a single line."""


class StreamCharError(ValueError):
    """A problem with what the user gave us (a value, a path, a file). The CLI prints it as one line."""
