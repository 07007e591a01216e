"""--ema: an exponential moving average of the weights, the model a run validates and keeps.

One checkpoint's validation accuracy jumps from epoch to epoch by about as much as the
differences a run is meant to find; the average of the last few thousand steps' weights is
steadier and usually a little better (Polyak averaging; timm's ModelEma). Batch-norm running
statistics are averaged like the weights; integer buffers are copied.
"""

import copy

import torch

from fercli.errors import FercliError


class WeightAverage:
    """`module` holds the average; `update(model)` after every optimizer step. The decay
    warms up as (1 + n) / (10 + n) after n updates (as TensorFlow's ExponentialMovingAverage
    with num_updates), so the first steps' weights, often a random start, fade out quickly."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise FercliError(f"--ema {decay} is not a decay: pass one in (0, 1), e.g. 0.999.")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = model.state_dict()
        for name, average in self.module.state_dict().items():  # views of the module's tensors
            if average.dtype.is_floating_point:
                average.lerp_(current[name], 1 - decay)
            else:
                average.copy_(current[name])

    def load(self, state_dict: dict, updates: int) -> None:
        """--resume: the average a checkpoint kept, and how many updates made it."""
        self.module.load_state_dict(state_dict)
        self.updates = updates
