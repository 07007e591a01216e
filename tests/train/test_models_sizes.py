"""Every registered model builds for every image size `fercli train --image-size` may get
and gives (N, num_classes) logits on a batch of that size."""

import pytest

torch = pytest.importorskip("torch")

from fercli import registry  # noqa: E402

MODELS = registry.names("model")


def test_every_builtin_model_is_covered():
    assert {"seed-cnn", "vgg", "vgg-small", "resnet-narrow", "resnet-s2"} <= set(MODELS)


@pytest.mark.parametrize("size", [40, 48, 64])
@pytest.mark.parametrize("name", MODELS)
def test_model_runs_at_image_size(name, size):
    torch.manual_seed(0)
    model = registry.create("model", name, num_classes=5, image_size=size).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, size, size))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
