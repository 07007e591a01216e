"""Multiply-accumulates and parameters of a network for one image (`fercli models`).

Counted with forward hooks on one image: each convolution's output elements times its
kernel's inputs per output (in channels / groups x kernel area), each linear layer's in x out
features. Batch norm, activations, pooling and additions are left out, as is usual for
such counts (they are a few percent of these networks' arithmetic)."""

import torch
from torch import nn


def count_macs(model: nn.Module, image_size: int = 48) -> int:
    macs = 0

    def conv(m, _inputs, out):
        nonlocal macs
        per_output = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        macs += out.numel() * per_output

    def linear(m, _inputs, out):
        nonlocal macs
        macs += out.numel() * m.in_features

    hooks = [
        m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 1, image_size, image_size))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return macs


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
