"""Errors that fercli reports to the user as one line, exit status 2, no traceback."""


class FercliError(Exception):
    """A problem with the user's input: the message says what is wrong and what to do."""

    exit_code = 2


class PluginError(FercliError):
    """A plugin is broken, missing, or clashes with another one."""
