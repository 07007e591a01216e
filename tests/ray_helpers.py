"""What the Ray tests share: skip where Ray Data is not installed."""

import pytest


def needs_ray():
    return pytest.importorskip("ray.data", reason="Ray Data not installed (fercli[ray])")
