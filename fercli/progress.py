"""Progress bars on a terminal, plain lines elsewhere, silence with --quiet; under `logged`
(fercli's Python API, fercli.api), both go to the `fercli` logger instead."""

import contextvars
import logging
import sys
import time
from contextlib import contextmanager

settings = {"quiet": False, "verbose": False}
log = logging.getLogger("fercli")
# True where say() and the bars log instead of printing: set by `logged`, in its own context
_to_log: contextvars.ContextVar[bool] = contextvars.ContextVar("fercli_to_log", default=False)


def __getattr__(name: str):
    """`console`, rich's Console on stderr, made (and rich imported) on first use: a run that
    prints no status line and no bar never imports rich.progress, nor rich where nothing
    else prints with it."""
    if name == "console":
        from rich.console import Console

        globals()["console"] = value = Console(stderr=True)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _console():
    made = globals().get("console")
    return __getattr__("console") if made is None else made


def logged(function, *args, **kwargs):
    """function(*args, **kwargs) with say()'s lines and the bars' lines logged (INFO, logger
    `fercli`) instead of printed, in this thread only; an iterator it returns is stepped
    the same way."""

    def run():
        _to_log.set(True)
        return function(*args, **kwargs)

    result = contextvars.copy_context().run(run)
    return _logged_steps(result) if hasattr(result, "__next__") else result


def to_log() -> bool:
    """Whether this runs under `logged`: messages go to the `fercli` logger."""
    return _to_log.get()


def _logged_steps(iterator):
    context = contextvars.copy_context()
    context.run(_to_log.set, True)
    try:
        while True:
            try:
                item = context.run(next, iterator)
            except StopIteration:
                return
            yield item
    finally:
        if hasattr(iterator, "close"):
            context.run(iterator.close)


def interactive() -> bool:
    return not settings["quiet"] and not _to_log.get() and sys.stderr.isatty()


def say(message: str) -> None:
    """A status line on stderr, unless --quiet (logged under `logged`)."""
    if _to_log.get():
        log.info(message)
    elif not settings["quiet"]:
        _console().print(message, highlight=False, markup=False, soft_wrap=True)


class _Plain:
    """Stand-in for a rich task off a terminal: a line at most every 10 s, and one at the end."""

    def __init__(self, total, description):
        self.total, self.description, self.done = total, description, 0
        self.fields: dict = {}
        self._last = time.monotonic()

    def advance(self, n=1, **fields):
        self.done += n
        self.fields.update(fields)
        if not settings["quiet"] and time.monotonic() - self._last > 10:
            self._last = time.monotonic()
            self._line()

    def _line(self):
        extra = " ".join(f"{k}={v}" for k, v in self.fields.items())
        line = f"{self.description}: {self.done}/{self.total} {extra}".rstrip()
        if _to_log.get():
            log.info(line)
        else:
            print(line, file=sys.stderr)

    def close(self):
        if not settings["quiet"] and self.total:
            self._line()


class _Rich:
    def __init__(self, progress, task):
        self.progress, self.task = progress, task

    def advance(self, n=1, **fields):
        self.progress.update(self.task, advance=n, **fields)


@contextmanager
def bar(total: int | None, description: str, fields: tuple[str, ...] = ()):
    """`with bar(n, "Decoding") as b: b.advance(k, loss="0.12")`."""
    if not interactive():
        plain = _Plain(total, description)
        yield plain
        plain.close()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn(f"{f}={{task.fields[{f}]}}") for f in fields]
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=_console(), transient=False) as progress:
        task = progress.add_task(description, total=total, **{f: "-" for f in fields})
        yield _Rich(progress, task)
