"""A PNG grid of flagged images with their reasons, to look at before `--apply`.

Each cell shows the flagged image (and, for a duplicate, the copy that is kept, to its
right), the filter, the path and the reason. Pillow only: no plotting library needed.
"""

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fercli.clean.filters import Flag
from fercli.data.images import ImageError, load_image
from fercli.util import atomic_path

THUMB = 96  # pixels per thumbnail (48x48 images drawn at twice their size)
CELL_W, CELL_H = 2 * THUMB + 24, THUMB + 74
COLUMNS = 6
TEXT_WIDTH = 34  # characters per caption line


def _thumb(root: Path, rel: str | None) -> Image.Image:
    if rel is None:
        return Image.new("L", (THUMB, THUMB), 255)
    try:
        arr = load_image(root / rel)
    except ImageError:
        # Unreadable: a gray square with a cross.
        im = Image.new("L", (THUMB, THUMB), 160)
        draw = ImageDraw.Draw(im)
        draw.line((0, 0, THUMB, THUMB), fill=60, width=3)
        draw.line((0, THUMB, THUMB, 0), fill=60, width=3)
        return im
    return Image.fromarray(np.asarray(arr)).resize((THUMB, THUMB), Image.Resampling.NEAREST)


def draw_contact_sheet(root, flags: list[Flag], path, limit: int = 200) -> int:
    """Draw up to `limit` flags (one cell each) into the PNG at `path`; returns the number
    drawn. Written atomically."""
    root = Path(root)
    shown = flags[:limit]
    rows = max(1, -(-len(shown) // COLUMNS))
    sheet = Image.new("RGB", (COLUMNS * CELL_W, rows * CELL_H + 24), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    title = f"{len(flags)} flagged file(s) in {root}"
    if len(flags) > len(shown):
        title += f" (first {len(shown)} shown)"
    draw.text((6, 4), title, fill="black", font=font)
    for n, flag in enumerate(shown):
        x, y = (n % COLUMNS) * CELL_W + 6, (n // COLUMNS) * CELL_H + 24
        sheet.paste(_thumb(root, flag.path).convert("RGB"), (x, y))
        if flag.kept:
            sheet.paste(_thumb(root, flag.kept).convert("RGB"), (x + THUMB + 6, y))
            draw.text((x + THUMB + 8, y + THUMB - 14), "kept", fill=(0, 128, 0), font=font)
        folder, _, name = flag.path.rpartition("/")
        lines = [f"[{flag.filter}] {name}", f"in {folder}"]
        lines += textwrap.wrap(flag.reason, TEXT_WIDTH)
        for k, line in enumerate(lines[:5]):
            colour = (160, 0, 0) if k == 0 else (40, 40, 40)
            draw.text((x, y + THUMB + 3 + 13 * k), line[:TEXT_WIDTH], fill=colour, font=font)
    path = Path(path)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return len(shown)
