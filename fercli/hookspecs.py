"""The hooks a fercli plugin can implement. Each receives a `register` callback."""

import pluggy

hookspec = pluggy.HookspecMarker("fercli")
hookimpl = pluggy.HookimplMarker("fercli")


@hookspec
def register_filters(register):
    """Register image filters for `fercli clean`: register(name, factory, description).

    factory(**options) returns a fercli.clean.filters.Filter: it sees images in batches and flags
    those to drop, each with a reason."""


@hookspec
def register_augmenters(register):
    """Register training augmenters: register(name, factory, description).

    factory(**options) returns a callable(batch, generator) -> batch acting on a float
    tensor of shape (N, 1, H, W) with values in [0, 1]."""


@hookspec
def register_models(register):
    """Register model architectures: register(name, factory, description).

    factory(num_classes=7, image_size=48) returns a torch.nn.Module for (N, 1, image_size,
    image_size) input (`fercli train --image-size`) giving (N, num_classes) logits. A factory
    without an image_size parameter is still accepted: it is called without it, and fercli
    refuses in one line an image size its model fails on."""


@hookspec
def register_commands(cli):
    """Add extra click commands to the `fercli` command group."""


@hookspec
def register_detectors(register):
    """Register face detectors for `predict-dir --faces`: register(name, factory, description).

    factory(**options) returns an object with detect(images) -> list[list[Face]]: images is
    a list of uint8 arrays, (H, W) grey or (H, W, 3) RGB, of any size; the result holds one
    list of fercli.faces.detect.Face per image (box, score, and five landmarks where the
    detector has them), best first."""
