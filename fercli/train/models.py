"""Model architectures for 48x48 single-channel faces (imports torch: keep it off the
`clean` and `predict-dir` paths; the built-in plugin only imports this when a model is built)."""

import torch
from torch import nn


class SeedCNN(nn.Module):
    """The seed notebook's network: three conv/ReLU/max-pool stages (32, 64, 128 filters),
    a 512-unit fully connected layer, dropout 0.5."""

    def __init__(self, num_classes: int = 7, image_size: int = 48):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = image_size // 8
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * side * side, 512),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


def _pooled_classifier(cin: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Global average pooling, dropout and one linear layer: the head of the conv nets here."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes)
    )


def _init_convs(module: nn.Module) -> None:
    """He initialisation for every convolution (ReLU follows each)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class VGGNet(nn.Module):
    """VGG-style network with batch norm: stages of two 3x3 convolutions and 2x2 max pooling,
    global average pooling, dropout, one linear layer. Works for any input size >= 16."""

    def __init__(self, num_classes: int = 7, widths=(64, 128, 256, 512), dropout: float = 0.4):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for width in widths:
            layers += _conv_bn_relu(cin, width) + _conv_bn_relu(width, width) + [nn.MaxPool2d(2)]
            cin = width
        self.features = nn.Sequential(*layers)
        self.classifier = _pooled_classifier(cin, num_classes, dropout)
        _init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Ensemble(nn.Module):
    """Several trained networks as one: the mean of their class probabilities. It returns the
    log of that mean, so the output is still logits (softmax gives the mean back) and every
    consumer of a single model's logits works unchanged."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(x).float().softmax(1) for m in self.members]).mean(0)
        return probs.clamp_min(1e-30).log()


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions, a 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class NarrowResNet(nn.Module):
    """A narrow ResNet for 48x48 faces: a 3x3 stem, basic blocks in stages that halve the
    side and double the width (`widths`, `blocks` per stage), global pooling, one linear
    layer. Dense 3x3 convolutions at small widths rather than depthwise-separable ones: a
    MobileNetV2-style net of about the same cost trained 6x slower on this CPU (depthwise
    convolutions' backward pass is slow there). `stem_stride=2` halves the side in the stem:
    the same work then buys twice the filters, which onnxruntime's int8 kernels run faster
    than narrow ones (resnet-s2 1.6x resnet-narrow: benchmarks/bench_architectures.py)."""

    def __init__(
        self,
        num_classes: int = 7,
        widths=(16, 32, 64, 128),
        blocks=(1, 1, 2, 1),
        dropout: float = 0.2,
        stem_stride: int = 1,
    ):
        super().__init__()
        layers: list[nn.Module] = _conv_bn_relu(1, widths[0], stem_stride)
        cin = widths[0]
        for stage, (width, n) in enumerate(zip(widths, blocks)):
            for i in range(n):
                layers.append(BasicBlock(cin, width, 2 if stage and i == 0 else 1))
                cin = width
        self.features = nn.Sequential(*layers)
        self.classifier = _pooled_classifier(cin, num_classes, dropout)
        _init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def create_model(name: str, *, num_classes: int, image_size: int = 48) -> nn.Module:
    """The registered model `name` (fercli.registry, the `register_models` hook), built for
    `num_classes` outputs and square `image_size` inputs. A plugin's factory written before
    `image_size` existed is called without it: at 48 as before; at another size only if its
    model runs on that input, else one line says so."""
    from fercli import registry
    from fercli.errors import PluginError

    entry = registry.get("model", name)
    if registry.takes(entry.factory, "image_size"):
        return entry.factory(num_classes=num_classes, image_size=image_size)
    model = entry.factory(num_classes=num_classes)
    if image_size != 48 and not _runs_on(model, image_size):
        raise PluginError(
            f"model {name!r} (plugin {entry.plugin!r}) builds for 48x48 input only (its factory "
            f"takes no image_size) and fails on {image_size}x{image_size}: pass --image-size 48."
        )
    return model


def _runs_on(model: nn.Module, image_size: int) -> bool:
    """Whether a model runs on one blank (1, 1, image_size, image_size) image."""
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, image_size, image_size))
        return True
    except Exception:
        return False
    finally:
        model.train(was_training)
