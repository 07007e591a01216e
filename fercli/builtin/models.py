"""Built-in model architectures. Factories import torch only when a model is built.

Each takes `image_size`, the side of the square input: seed-cnn's fully connected layer is
sized for it; the others end in global pooling and run on any size from 16 up."""

from fercli.hookspecs import hookimpl


def seed_cnn(num_classes: int = 7, image_size: int = 48):
    from fercli.train.models import SeedCNN

    return SeedCNN(num_classes, image_size)


def vgg(num_classes: int = 7, image_size: int = 48):
    from fercli.train.models import VGGNet

    return VGGNet(num_classes, widths=(48, 96, 192, 384))


def vgg_small(num_classes: int = 7, image_size: int = 48):
    from fercli.train.models import VGGNet

    return VGGNet(num_classes, widths=(32, 64, 128, 256), dropout=0.3)


def resnet_narrow(num_classes: int = 7, image_size: int = 48):
    from fercli.train.models import NarrowResNet

    return NarrowResNet(num_classes, widths=(16, 32, 64, 128), blocks=(1, 1, 2, 1))


def resnet_s2(num_classes: int = 7, image_size: int = 48):
    from fercli.train.models import NarrowResNet

    return NarrowResNet(num_classes, widths=(32, 64, 128, 256), blocks=(1, 1, 2, 1), stem_stride=2)


@hookimpl
def register_models(register):
    register("seed-cnn", seed_cnn, "The seed notebook's 3-conv CNN (32/64/128 filters, fc 512).")
    register("vgg", vgg, "VGG-style, batch norm, 8 convs (48-384 filters), global pooling.")
    register("vgg-small", vgg_small, "Narrow vgg (32-256 filters): about 2x cheaper.")
    register(
        "resnet-narrow",
        resnet_narrow,
        "CPU student: narrow ResNet, 5 basic blocks (16-128 filters), 1/28 of the vgg ensemble.",
    )
    register(
        "resnet-s2",
        resnet_s2,
        "CPU student: stride-2 stem, 5 basic blocks (32-256 filters) from 24x24; the work of "
        "resnet-narrow, 1.6x as fast in int8.",
    )
