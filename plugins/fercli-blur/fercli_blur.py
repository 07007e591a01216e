"""Example fercli plugin: a `blur` filter and a `gaussian-blur` augmenter.

    pip install ./plugins/fercli-blur
    fercli plugins                       # lists "blur", origin "entry point"
    fercli clean DATA --filters blur     # flags images whose Laplacian variance is low

Read plugins/README.md for the contracts this module follows.
"""

import numpy as np

from fercli.clean.filters import Filter
from fercli.hookspecs import hookimpl

__version__ = "0.1.0"


def laplacian_variance(images: np.ndarray) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian of each (n, h, w) image: low means few edges,
    i.e. a blurry (or flat) image."""
    x = images.astype(np.float32)
    lap = 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
    return lap.reshape(len(x), -1).var(axis=1)


class BlurFilter(Filter):
    """Flags images whose variance of the Laplacian is under `threshold`.

    On FER-2013 (48x48) the default 100 flags about 1 image in 1000: blank frames and
    very blurred, low-contrast faces; a sharp face scores several hundred or more."""

    name = "blur"

    def __init__(self, threshold: float = 100.0):
        self.threshold = float(threshold)

    def check(self, batch):
        readable = batch.readable()
        if not readable:
            return
        variances = laplacian_variance(batch.images[readable])
        for index, value in zip(readable, variances, strict=True):
            if value < self.threshold:
                yield index, f"blurry: variance of the Laplacian {value:.1f} < {self.threshold:g}"


def gaussian_blur(sigma=(0.2, 1.2), p: float = 0.5):
    """Blur each image with probability p by a Gaussian of a random sigma in `sigma`."""
    import torch  # lazily: `fercli clean` and `fercli plugins` must not import torch

    low, high = (float(s) for s in sigma)
    radius = max(1, int(np.ceil(3 * high)))

    def augment(batch, generator):
        n = len(batch)
        if n == 0:
            return batch
        device = batch.device
        sigmas = torch.rand(n, generator=generator, device=device) * (high - low) + low
        apply = torch.rand(n, generator=generator, device=device) < p
        offsets = torch.arange(-radius, radius + 1, device=device, dtype=batch.dtype)
        kernels = torch.exp(-(offsets[None, :] ** 2) / (2 * sigmas[:, None].to(batch.dtype) ** 2))
        kernels = kernels / kernels.sum(1, keepdim=True)
        # One separable convolution per image: the images become channels of one sample.
        x = batch.transpose(0, 1)  # (1, n, h, w)
        x = torch.nn.functional.pad(x, (radius, radius, radius, radius), mode="reflect")
        x = torch.nn.functional.conv2d(x, kernels[:, None, :, None], groups=n)
        x = torch.nn.functional.conv2d(x, kernels[:, None, None, :], groups=n)
        blurred = x.transpose(0, 1)
        return torch.where(apply[:, None, None, None], blurred, batch)

    return augment


@hookimpl
def register_filters(register):
    register(
        "blur", BlurFilter, "Flags blurry images: variance of the Laplacian < threshold (100)."
    )


@hookimpl
def register_augmenters(register):
    register(
        "gaussian-blur",
        gaussian_blur,
        "Gaussian blur, sigma uniform in 0.2-1.2 pixels, with probability 0.5.",
    )
