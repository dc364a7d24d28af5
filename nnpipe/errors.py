"""The one exception type the library raises for bad input."""


class PipelineError(Exception):
    """Bad input (params, files, CLI arguments) or a failed run, with a one-line message.

    Stage entry points turn it into that message on stderr and a non-zero exit.
    """
