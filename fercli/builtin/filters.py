"""Built-in filters for `fercli clean` (filled in by the clean issue)."""

from fercli.hookspecs import hookimpl


@hookimpl
def register_filters(register):
    pass
