"""Every training recipe in recipes/ loads as `fercli train --config` reads it: valid TOML,
only options `fercli train` has, a registered model and augmenters, a teacher that exists."""

from pathlib import Path

import pytest

from fercli import registry
from fercli.commands import ALL
from fercli.config import default_map, read_config

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes").glob("*.toml"))


def test_there_are_recipes():
    assert {"default.toml", "fast.toml"} <= {p.name for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_loads(path):
    config, _ = read_config(path)
    train = default_map(config, {c.name: c for c in ALL})["train"]  # raises on an unknown key
    assert train["model"] in registry.names("model"), f"unknown model {train['model']!r}"
    augment = train.get("augment", "none")
    if augment != "none":
        unknown = set(augment.split(",")) - set(registry.names("augmenter"))
        assert not unknown, f"unknown augmenter(s) {sorted(unknown)}"
    if "teacher" in train:
        assert (REPO / train["teacher"]).is_file()
