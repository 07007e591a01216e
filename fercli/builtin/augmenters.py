"""Built-in training augmenters. Factories import torch only when an augmenter is built."""

from functools import partial

from fercli.hookspecs import hookimpl


def _factory(name):
    def factory(**options):
        from fercli.train import augment

        return partial(getattr(augment, name), **options)

    return factory


@hookimpl
def register_augmenters(register):
    register("flip", _factory("flip"), "Horizontal flip with probability 0.5.")
    register("rotate", _factory("rotate"), "Random rotation within +-20 degrees.")
    register("crop", _factory("crop"), "Random resized crop (80-100% of the area), resized back.")
    register("jitter", _factory("jitter"), "Brightness and contrast jitter (+-20%).")
    register("erase", _factory("erase"), "Random erasing of a small rectangle (p=0.5).")
