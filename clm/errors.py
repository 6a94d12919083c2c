"""The exceptions the command line turns into a clear message and exit code 2.

Each package raises a subclass with a message that says what is wrong and what
to do; nothing here imports anything heavy.
"""


class ClmError(Exception):
    """An error a user can act on; its message is shown as is."""

    exit_code = 2
