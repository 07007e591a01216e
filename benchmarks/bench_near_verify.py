"""Precision and recall of `fercli clean`'s near-duplicate search, with and without the pixel
verification (fercli.clean.near_verify), on real FER-2013 faces; and contact sheets to check by eye.

Two sets of pairs are built from the FER-2013 copy (../shared/fer2013, or --data):

- planted near duplicates (positives, for recall): --faces distinct FER-2013 faces drawn at
  random (seeded; not blank), each edited once by every edit of fercli.clean.near_edits (crop,
  shift, rescale, zoom, JPEG re-encoding, brightness/contrast, rotation, caption), every
  copy stored as a JPEG. A planted pair is found when its phash distance is within the
  threshold (and, with verification, when its pixel score is at least the verify
  threshold).
- the closest pairs of different FER-2013 faces: every pair of FER-2013 images (different
  pixels, not blank) whose phashes are within the threshold, as `fercli clean` finds them.
  The ones labelled "different" in benchmarks/near_verify_labels.csv (looked at by eye on
  this script's sheets: two different people, or two different photos of one person) are
  the negatives; with the hash alone every one of them is a false positive.

Printed: recall of the planted pairs (hash alone; hash and verification), per edit and in
all; precision on planted + labelled pairs (hash alone; with verification); what the
verification does to the FER-2013 pairs (checked, rejected, by hash distance); and the
speed of the verification (pairs per second, this machine). Written into SHEETS (a folder,
e.g. under /tmp; never commit it): rejected.png (every FER-2013 pair the verification
rejects, lowest score first), accepted_closest.png (the accepted pairs with the lowest
scores), accepted_random.png (a random sample of accepted pairs), planted_lowest.png (the
planted pairs with the lowest scores). Each cell: the two images at twice their size,
the hash distance, the pixel score and the label where there is one.

    .tox/py/bin/python benchmarks/bench_near_verify.py /tmp/near-sheets
    .tox/py/bin/python benchmarks/bench_near_verify.py /tmp/near-sheets --faces 300 --seed 1

Exits 0 with a message where the data is absent.
"""

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
LABELS = REPO / "benchmarks" / "near_verify_labels.csv"


def dataset_root(explicit: str | None) -> Path | None:
    path = Path(explicit or os.environ.get("FERCLI_FER2013") or REPO.parent / "shared/fer2013")
    return path if (path / "train").is_dir() else None


def decode_all(root: Path):
    """(relative paths, 48x48 images, phash bits, digests, usable) of every file."""
    from fercli.builtin.filters import DEFAULT_BLANK_STD
    from fercli.clean.filters import ImageBatch
    from fercli.clean.pipeline import decode_chunk, scan
    from fercli.data.dataset import map_chunks

    _, _, paths, _, _ = scan(root)
    full = [str(root / p) for p in paths]
    n = len(paths)
    images = np.zeros((n, 48, 48), np.uint8)
    bits = np.zeros((n, 64), bool)
    digests: list = [None] * n
    usable = np.zeros(n, bool)
    for first, (imgs, errors, digs, hashes) in map_chunks(
        decode_chunk, full, [("phash", 8)], label="Decoding"
    ):
        part = slice(first, first + len(imgs))
        images[part] = imgs
        bits[part] = hashes[("phash", 8)]
        digests[part] = digs
        batch = ImageBatch(paths[part], [""] * len(imgs), [""] * len(imgs), imgs, errors)
        usable[part] = np.array([e is None for e in errors]) & (
            batch.pixel_std() >= DEFAULT_BLANK_STD
        )
    return paths, images, bits, digests, usable


def fer_pairs(bits, digests, usable, threshold: int):
    """Pairs of distinct pixel sets (one row each, not blank) within the hash threshold."""
    from fercli.clean.near_search import near_pairs

    seen, rows = set(), []
    for r in np.flatnonzero(usable).tolist():
        if digests[r] not in seen:
            seen.add(digests[r])
            rows.append(r)
    rows = np.array(rows)
    i, j, d = near_pairs(bits[rows], threshold)
    return rows[i], rows[j], d


def planted_pairs(images, usable, digests, faces: int, seed: int):
    """(originals, edited copies, edit names) for `faces` random distinct faces x every edit."""
    from fercli.clean.near_edits import EDITS, plant

    rng = np.random.default_rng(seed)
    seen, rows = set(), []
    for r in np.flatnonzero(usable).tolist():
        if digests[r] not in seen:
            seen.add(digests[r])
            rows.append(r)
    chosen = rng.choice(rows, min(faces, len(rows)), replace=False)
    a, b, names = [], [], []
    for r in chosen.tolist():
        for name in EDITS:
            a.append(images[r])
            b.append(plant(images[r], name, rng))
            names.append(name)
    return np.array(a), np.array(b), np.array(names)


def read_labels(path: Path) -> dict[tuple[str, str], str]:
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {(row["a"], row["b"]): row["label"] for row in csv.DictReader(f)}


def draw_pairs(path: Path, title: str, left, right, captions, columns: int = 8) -> None:
    from PIL import Image, ImageDraw

    thumb, pad, text_h = 96, 8, 14
    cell_w, cell_h = 2 * thumb + pad, thumb + text_h + 4
    rows = max(1, -(-len(left) // columns))
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h + 18), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 3), title, fill="black")
    for n, (a, b, caption) in enumerate(zip(left, right, captions)):
        x, y = (n % columns) * cell_w, (n // columns) * cell_h + 18
        for k, im in enumerate((a, b)):
            big = Image.fromarray(np.asarray(im, np.uint8)).resize((thumb, thumb), Image.NEAREST)
            sheet.paste(big.convert("RGB"), (x + k * thumb, y))
        draw.text((x + 2, y + thumb + 1), f"#{n} {caption}", fill=(180, 0, 0))
    sheet.save(path)


def main(argv=None) -> int:
    from fercli.clean.duplicates import default_threshold
    from fercli.clean.near_edits import EDITS
    from fercli.clean.near_verify import DEFAULT_VERIFY_THRESHOLD, pair_scores
    from fercli.data.hashing import hash_arrays

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sheets", type=Path, help="folder for the contact sheets (e.g. /tmp/x)")
    parser.add_argument("--data", help="FER-2013 root [default: ../shared/fer2013]")
    parser.add_argument("--faces", type=int, default=500, help="faces planted [500]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=int, default=default_threshold(64))
    parser.add_argument("--verify-threshold", type=float, default=DEFAULT_VERIFY_THRESHOLD)
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--per-sheet", type=int, default=160, help="pairs per sheet [160]")
    args = parser.parse_args(argv)
    root = dataset_root(args.data)
    if root is None:
        print("no FER-2013 copy (pass --data DIR or set FERCLI_FER2013): nothing measured")
        return 0
    t, vt = args.threshold, args.verify_threshold
    args.sheets.mkdir(parents=True, exist_ok=True)
    paths, images, bits, digests, usable = decode_all(root)

    # Planted pairs: recall.
    a, b, names = planted_pairs(images, usable, digests, args.faces, args.seed)
    dist = (hash_arrays("phash", list(a)) != hash_arrays("phash", list(b))).sum(axis=1)
    stack = np.concatenate([a, b])
    n = len(a)
    start = time.perf_counter()
    planted_score = pair_scores(stack, np.arange(n), np.arange(n) + n, enough=vt)
    planted_seconds = time.perf_counter() - start
    by_hash = dist <= t
    verified = by_hash & (planted_score >= vt)
    print(f"FER-2013 at {root}: {len(paths):,} files, {int(usable.sum()):,} usable")
    print(f"hash threshold {t} (phash, 64 bits), verify threshold {vt:g}")
    print(f"\nPlanted near duplicates ({args.faces} faces x {len(EDITS)} edits, seed {args.seed}):")
    print(f"{'edit':<11} {'pairs':>5} {'hash':>6} {'hash+verify':>11} {'lowest score':>12}")
    for name in EDITS:
        k = names == name
        low = planted_score[k & by_hash].min() if (k & by_hash).any() else float("nan")
        print(
            f"{name:<11} {int(k.sum()):>5} {by_hash[k].mean():>6.1%} {verified[k].mean():>11.1%}"
            f" {low:>12.3f}"
        )
    print(
        f"{'all':<11} {n:>5} {by_hash.mean():>6.1%} {verified.mean():>11.1%}"
        f" {planted_score[by_hash].min():>12.3f}"
    )
    print(
        f"recall of the hash-found planted pairs kept by verification: "
        f"{int(verified.sum())}/{int(by_hash.sum())}"
    )

    # FER-2013 pairs within the hash threshold: precision.
    i, j, d = fer_pairs(bits, digests, usable, t)
    start = time.perf_counter()
    score = pair_scores(images, i, j, enough=vt)
    seconds = time.perf_counter() - start
    accept = score >= vt
    print(f"\nFER-2013 pairs within the hash threshold (different pixels): {len(i):,}")
    for dd in np.unique(d).tolist():
        k = d == dd
        print(f"  distance {dd}: {int(k.sum()):>5} pairs, {int((k & ~accept).sum()):>4} rejected")
    print(f"  all: {len(i):,} pairs, {int((~accept).sum()):,} rejected by verification")
    labels = read_labels(args.labels)
    lab = np.array([labels.get((paths[x], paths[y]), "") for x, y in zip(i.tolist(), j.tolist())])
    neg = lab == "different"
    same = lab == "same"
    print(
        f"  labelled by eye ({args.labels.name}): {int(neg.sum())} different, "
        f"{int(same.sum())} same photo, {int((lab == 'unsure').sum())} unsure"
    )
    tp_hash, tp_ver = int(by_hash.sum()), int(verified.sum())
    fp_hash, fp_ver = int(neg.sum()), int((neg & accept).sum())
    print("\nPrecision and recall on the labelled set (planted pairs + pairs labelled different):")
    for what, tp, fp in (("hash alone", tp_hash, fp_hash), ("hash + verify", tp_ver, fp_ver)):
        precision = tp / max(1, tp + fp)
        print(f"  {what:<14} precision {precision:.2%} ({tp}/{tp + fp}), recall {tp / n:.2%}")
    print(
        f"  labelled FER-2013 pairs: verification keeps {int((same & accept).sum())}/"
        f"{int(same.sum())} same-photo pairs and {fp_ver}/{fp_hash} different ones"
    )
    pairs = len(i) + n
    total = seconds + planted_seconds
    print(f"\nverification speed: {pairs:,} pairs in {total:.2f} s ({pairs / total:,.0f} pairs/s)")

    # Contact sheets.
    def caption(k):
        tag = {"different": " DIFF", "same": " same", "unsure": " ?"}.get(lab[k], "")
        return f"d{d[k]} s{score[k]:.3f}{tag}"

    def sheet(name, title, rows):
        rows = list(rows)[: args.per_sheet]
        draw_pairs(
            args.sheets / name, title, images[i[rows]], images[j[rows]], [caption(k) for k in rows]
        )
        print(f"  {args.sheets / name}: {len(rows)} pairs")

    print("\nContact sheets:")
    rejected = np.flatnonzero(~accept)
    rejected = rejected[np.argsort(score[rejected])]
    sheet("rejected.png", f"rejected: score < {vt:g} ({len(rejected)}), lowest first", rejected)
    kept = np.flatnonzero(accept)
    closest = kept[np.argsort(score[kept])]
    sheet("accepted_closest.png", f"accepted, lowest scores first ({len(kept)})", closest)
    rng = np.random.default_rng(args.seed)
    sample = rng.choice(kept, min(len(kept), args.per_sheet), replace=False)
    sheet("accepted_random.png", "accepted, a random sample", np.sort(sample))
    low = np.flatnonzero(by_hash)
    low = low[np.argsort(planted_score[low])][: args.per_sheet]
    draw_pairs(
        args.sheets / "planted_lowest.png",
        "planted pairs found by the hash, lowest scores first",
        a[low],
        b[low],
        [f"{names[k]} d{dist[k]} s{planted_score[k]:.3f}" for k in low],
    )
    print(f"  {args.sheets / 'planted_lowest.png'}: {len(low)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
