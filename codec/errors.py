"""The errors every layer raises; the CLI turns each into a message and a non-zero exit.

- InputError: data the toolkit cannot process (the message names the file or trace).
- CheckpointError: a model or checkpoint that is missing, corrupt or of another kind.
- UsageError: options that contradict each other; the CLI reports it like an argparse error.
"""


class InputError(ValueError):
    """Input the toolkit cannot process; the message names the trace or file."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt or of another kind; the message names the path."""


class UsageError(ValueError):
    """Options or arguments that cannot be used together, or a value out of range."""
