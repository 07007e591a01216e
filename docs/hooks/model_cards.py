"""MkDocs hook: the bundled models' cards become pages models/NAME.md of the site.

The cards live beside the model files (fercli/bundled_models/NAME/MODEL_CARD.md, written by
scripts/model_card.py) and MkDocs reads pages only under docs/, so this adds each one as a
generated page when the site is built: the site shows the cards as shipped, and nothing is
copied by hand. mkdocs.yml names the hook and lists models/fast.md and models/accurate.md
in its nav; tests/test_readme.py checks that the nav has a page for every bundled model.
"""

from pathlib import Path

from mkdocs.structure.files import File

CARDS = Path(__file__).resolve().parents[2] / "fercli" / "bundled_models"


def on_files(files, config):
    for card in sorted(CARDS.glob("*/MODEL_CARD.md")):
        files.append(
            File.generated(config, f"models/{card.parent.name}.md", content=card.read_text())
        )
    return files
