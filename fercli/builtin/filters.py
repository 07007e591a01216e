"""Built-in filters for `fercli clean`: corrupt, blank and dedup, registered like any
plugin's. They see images in batches (fercli.clean.filters.ImageBatch)."""

import hashlib
import os

import numpy as np

from fercli.clean.filters import Filter, ImageBatch, is_unreadable
from fercli.defaults import BLANK_STD, HASH, HASH_SIZE
from fercli.hookspecs import hookimpl

DEFAULT_BLANK_STD = BLANK_STD  # fercli.defaults says why 5.0


class CorruptFilter(Filter):
    """Files that were read and failed to decode: truncated, zero-byte and non-image files,
    and decompression bombs. Files that could not be read at all are not corrupt: `fercli
    clean` reports them as unreadable and leaves them in place."""

    name = "corrupt"

    def check(self, batch: ImageBatch):
        return [
            (i, error)
            for i, error in enumerate(batch.errors)
            if error is not None and not is_unreadable(error)
        ]


class BlankFilter(Filter):
    """Constant or near-constant images: pixel standard deviation under `blank_std`."""

    name = "blank"

    def __init__(self, blank_std: float = DEFAULT_BLANK_STD):
        self.blank_std = blank_std

    def check(self, batch: ImageBatch):
        std = batch.pixel_std()
        return [
            (i, f"near-constant: pixel std {std[i]:.2f} < {self.blank_std:g}, mean {mean:.0f}")
            for i in batch.readable()
            if std[i] < self.blank_std
            for mean in [batch.images[i].mean()]
        ]


class DedupFilter(Filter):
    """Exact and near duplicates by perceptual hash; see fercli.clean.duplicates for the groups
    and the rule that picks the copy to keep. Blank images are left out (their hashes say
    nothing), as are unreadable ones. With `verify` (the default) near duplicates are
    checked on their pixels (fercli.clean.near_verify): the images of candidate pairs are decoded
    again from `root` at the end (no pixels are kept while scanning), or, without a root
    (batches built by hand), kept from the batches."""

    name = "dedup"

    def __init__(
        self,
        hash: str = HASH,
        hash_size: int = HASH_SIZE,
        threshold: int | None = None,
        blank_std: float = DEFAULT_BLANK_STD,
        drop_conflicts: bool = False,
        verify: bool = True,
        verify_threshold: float | None = None,
        root=None,
    ):
        from fercli.clean.duplicates import default_threshold
        from fercli.clean.near_verify import DEFAULT_VERIFY_THRESHOLD, check_threshold
        from fercli.data.hashing import check_hash, hash_bits
        from fercli.errors import FercliError

        check_hash(hash, hash_size)
        bits = hash_bits(hash, hash_size)
        self.threshold = default_threshold(bits) if threshold is None else threshold
        if not 0 <= self.threshold < bits:
            raise FercliError(
                f"threshold {self.threshold} is out of range for {bits}-bit hashes: "
                f"use 0 to {bits - 1}."
            )
        self.hash_spec = (hash, hash_size)
        self.blank_std = blank_std
        self.drop_conflicts = drop_conflicts
        self.verify = bool(verify)
        if verify_threshold is None:
            verify_threshold = DEFAULT_VERIFY_THRESHOLD
        self.verify_threshold = check_threshold(verify_threshold) if self.verify else None
        self.root = root
        self.verification: dict = {}
        self._images = []  # only without a root
        self.groups = []
        self._paths, self._splits, self._labels, self._digests = [], [], [], []
        self._bits = []

    def check(self, batch: ImageBatch):
        std = batch.pixel_std()
        rows = [i for i in batch.readable() if std[i] >= self.blank_std]
        bits = batch.hashes.get(self.hash_spec)
        if bits is None:  # a batch built by hand: hash the 48x48 images instead
            from PIL import Image

            from fercli.data.hashing import hash_images

            bits = np.zeros((len(batch), self.hash_spec[1] ** 2), bool)
            pictures = [Image.fromarray(batch.images[i]) for i in rows]
            bits[rows] = hash_images(self.hash_spec[0], pictures, self.hash_spec[1])
        self._paths += [batch.paths[i] for i in rows]
        self._splits += [batch.splits[i] for i in rows]
        self._labels += [batch.labels[i] for i in rows]
        if batch.digests:
            self._digests += [batch.digests[i] for i in rows]
        else:  # a batch built by hand: identical 48x48 arrays count as identical pixels
            self._digests += [hashlib.blake2b(batch.images[i].tobytes()).digest() for i in rows]
        self._bits.append(bits[rows])
        if self.verify and self.root is None:
            self._images.append(batch.images[rows])
        return ()

    def finish(self):
        from fercli.clean.duplicates import DuplicateSearch, find_duplicates
        from fercli.clean.near_verify import PixelScorer

        bits = np.concatenate(self._bits) if self._bits else np.zeros((0, 1), bool)
        scorer = None
        if self.verify and self.root is not None:
            base = os.path.join(str(self.root), "")
            scorer = PixelScorer(
                files=[base + p for p in self._paths], enough=self.verify_threshold
            )
        elif self.verify:
            images = np.concatenate(self._images) if self._images else np.zeros((0, 48, 48))
            scorer = PixelScorer(images=images, enough=self.verify_threshold)
        self.verification = {}
        self.groups, flags = find_duplicates(
            self._paths,
            self._splits,
            self._labels,
            bits,
            self._digests,
            DuplicateSearch(self.threshold, self.drop_conflicts, scorer, self.verify_threshold),
            stats=self.verification,
        )
        return flags


@hookimpl
def register_filters(register):
    register("corrupt", CorruptFilter, "Undecodable files: truncated, empty or not an image.")
    register(
        "blank",
        BlankFilter,
        f"Near-constant images: pixel std < --blank-std (default {DEFAULT_BLANK_STD:g}).",
    )
    register(
        "dedup",
        DedupFilter,
        "Exact and near duplicates by perceptual hash, incl. cross-split leaks and "
        "label conflicts; keeps one copy per group (test, then val, first).",
    )
