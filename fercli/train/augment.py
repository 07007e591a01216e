"""Batched augmentations on float tensors (N, 1, H, W) in [0, 1]: no per-image Python.

Each function takes the batch and a torch.Generator, so a seeded run is repeatable and
--resume can restore the exact random stream.
"""

import math

import torch
import torch.nn.functional as F


def _uniform(n, low, high, generator, device):
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def flip(batch, generator, p: float = 0.5):
    """Horizontal flip of each image with probability p."""
    mask = torch.rand(len(batch), generator=generator, device=batch.device) < p
    return torch.where(mask[:, None, None, None], batch.flip(-1), batch)


def _warp(batch, theta):
    grid = F.affine_grid(theta.to(batch.dtype), list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)


def rotate(batch, generator, degrees: float = 20.0):
    """Random rotation in [-degrees, degrees], borders replicated."""
    n = len(batch)
    angle = _uniform(n, -degrees, degrees, generator, batch.device) * math.pi / 180
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _warp(batch, theta)


def crop(batch, generator, scale=(0.8, 1.0), ratio=(0.9, 1.1)):
    """Random resized crop: a window of `scale` of the area and `ratio` aspect, resized back."""
    n = len(batch)
    area = _uniform(n, *scale, generator, batch.device)
    log_r = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), generator, batch.device)
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0)
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = _uniform(n, -1, 1, generator, batch.device) * (1 - w)
    cy = _uniform(n, -1, 1, generator, batch.device) * (1 - h)
    zero = torch.zeros_like(w)
    theta = torch.stack([torch.stack([w, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)
    return _warp(batch, theta)


def jitter(batch, generator, brightness: float = 0.2, contrast: float = 0.2):
    """Brightness and contrast jitter by random factors in [1 - x, 1 + x]."""
    n = len(batch)
    b = _uniform(n, 1 - brightness, 1 + brightness, generator, batch.device)[:, None, None, None]
    c = _uniform(n, 1 - contrast, 1 + contrast, generator, batch.device)[:, None, None, None]
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    return ((batch * b - mean * b) * c + mean * b).clamp(0, 1)


def erase(batch, generator, p: float = 0.5, scale=(0.02, 0.2)):
    """Random erasing: with probability p, a random rectangle is filled with noise."""
    n, _, height, width = batch.shape
    dev = batch.device
    area = _uniform(n, *scale, generator, dev)
    r = torch.exp(_uniform(n, math.log(0.3), math.log(3.3), generator, dev))
    h = (torch.sqrt(area * r) * height).clamp(1, height)
    w = (torch.sqrt(area / r) * width).clamp(1, width)
    top = torch.rand(n, generator=generator, device=dev) * (height - h)
    left = torch.rand(n, generator=generator, device=dev) * (width - w)
    ys = torch.arange(height, device=dev)[None, :, None]
    xs = torch.arange(width, device=dev)[None, None, :]
    box = (
        (ys >= top[:, None, None])
        & (ys < (top + h)[:, None, None])
        & (xs >= left[:, None, None])
        & (xs < (left + w)[:, None, None])
    )
    box &= (torch.rand(n, generator=generator, device=dev) < p)[:, None, None]
    noise = torch.rand(batch.shape, generator=generator, device=dev)
    return torch.where(box[:, None], noise, batch)
