"""The one exception type the library raises for bad input."""


class PipelineError(Exception):
    """Bad input (params, files, CLI arguments) or a failed run, with a one-line message.

    Stage entry points turn it into that message on stderr and a non-zero exit.
    """


def short(value: object, limit: int = 80) -> str:
    """``value`` for an error message: a string as it is, anything else as its repr, cut to
    ``limit`` characters, so that hostile input never makes an unbounded error line."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"
