"""The hooks a fercli plugin can implement. Each receives a `register` callback."""

import pluggy

hookspec = pluggy.HookspecMarker("fercli")
hookimpl = pluggy.HookimplMarker("fercli")


@hookspec
def register_filters(register):
    """Register image filters for `fercli clean`: register(name, factory, description).

    factory(**options) returns a fercli.filters.Filter: it sees images in batches and flags
    those to drop, each with a reason."""


@hookspec
def register_augmenters(register):
    """Register training augmenters: register(name, factory, description).

    factory(**options) returns a callable(batch, generator) -> batch acting on a float
    tensor of shape (N, 1, H, W) with values in [0, 1]."""


@hookspec
def register_models(register):
    """Register model architectures: register(name, factory, description).

    factory(num_classes=7) returns a torch.nn.Module for (N, 1, 48, 48) input."""


@hookspec
def register_commands(cli):
    """Add extra click commands to the `fercli` command group."""
