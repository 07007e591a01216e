"""What a `fercli clean` filter sees and returns.

A filter is built by its registered factory, `factory(**options)`, and then:
- `check(batch)` is called for every batch of images and yields `(index, reason)` for the
  images of that batch it flags;
- `finish()` is called once after the last batch, for filters that must see every image
  before deciding (duplicates); it yields `Flag`s.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass
class ImageBatch:
    paths: list[str]  # relative to the dataset root, "/" separators
    splits: list[str]
    labels: list[str]  # class names
    images: np.ndarray  # (n, 48, 48) uint8 by fercli.images; all zeros where unreadable
    errors: list[str | None]  # the decoder's message for unreadable files, else None

    def __len__(self) -> int:
        return len(self.paths)

    def readable(self) -> list[int]:
        return [i for i, e in enumerate(self.errors) if e is None]


@dataclass
class Flag:
    path: str
    filter: str
    reason: str
    group: int | None = None  # duplicate group id
    kept: str | None = None  # for duplicates: the copy that stays


class Filter:
    """Base class; subclasses override `check` and, where they need every image, `finish`."""

    name = "filter"

    def check(self, batch: ImageBatch) -> Iterable[tuple[int, str]]:
        return ()

    def finish(self) -> Iterable[Flag]:
        return ()
