"""What a `fercli clean` filter sees and returns.

A filter is built by its registered factory, `factory(**options)`, and then:
- `check(batch)` is called for every batch of images and yields `(index, reason)` for the
  images of that batch it flags;
- `finish()` is called once after the last batch, for filters that must see every image
  before deciding (duplicates); it yields `Flag`s.

The factory receives, as keyword arguments, those of `fercli clean`'s settings that it names
as parameters: `blank_std`, `hash`, `hash_size`, `threshold`, `drop_conflicts`, `verify`,
`verify_threshold`, and `root` (the dataset folder, for a filter that reads files again at
the end: batch paths are relative to it). A filter that sets `hash_spec = (kind,
hash_size)` (kind: phash, dhash, ahash or whash) finds those hashes of every image of the
batch, bit-identical to `imagehash`, in `batch.hashes`.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

UNREADABLE = "unreadable: "  # an error's prefix where the file could not be opened or read


def is_unreadable(error: str) -> bool:
    return error.startswith(UNREADABLE)


@dataclass
class ImageBatch:
    paths: list[str]  # relative to the dataset root, "/" separators
    splits: list[str]
    labels: list[str]  # class names
    images: np.ndarray  # (n, 48, 48) uint8 by fercli.data.images; all zeros where unreadable
    # the decoder's message for files that failed to decode, else None; a file that could not
    # even be opened or read (an OSError: permission denied, an I/O error) has UNREADABLE
    # before its reason: it is no corrupt file, and no filter may flag it (fercli.clean.pipeline)
    errors: list[str | None]
    # (kind, hash_size) -> bool (n, hash_size**2) for each filter's hash_spec; zero rows
    # where unreadable. Hashes are of the file's own pixels (imagehash's convert("L")).
    hashes: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    # A digest of each file's gray pixels at their own size (None where unreadable):
    # equal digests mean identical pixels.
    digests: list[bytes | None] = field(default_factory=list)
    _std: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.paths)

    def readable(self) -> list[int]:
        return [i for i, e in enumerate(self.errors) if e is None]

    def unreadable(self) -> list[int]:
        """The files that could not be opened or read (their error starts with UNREADABLE)."""
        return [i for i, e in enumerate(self.errors) if e is not None and is_unreadable(e)]

    def pixel_std(self) -> np.ndarray:
        """Standard deviation of each image's pixels (0-255), computed once per batch."""
        if self._std is None:
            # From integer sums (exact): several times faster than ndarray.std on uint8.
            flat = self.images.reshape(len(self.images), -1)
            wide = flat.astype(np.int64)
            total = wide.sum(axis=1)
            squares = np.einsum("ij,ij->i", wide, wide)
            var = (squares - total * total / flat.shape[1]) / flat.shape[1]
            self._std = np.sqrt(np.maximum(var, 0.0))
        return self._std


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
    hash_spec: tuple[str, int] | None = None  # set to have batch.hashes filled

    def check(self, batch: ImageBatch) -> Iterable[tuple[int, str]]:
        return ()

    def finish(self) -> Iterable[Flag]:
        return ()
