"""Built-in training augmenters (filled in by the train issue)."""

from fercli.hookspecs import hookimpl


@hookimpl
def register_augmenters(register):
    pass
