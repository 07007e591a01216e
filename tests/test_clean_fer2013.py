"""`fercli clean` on the real FER-2013 copy: the counts docs/clean.md reports (skipped where the
data is absent)."""

import pytest

from fercli.cleaning import CleanSettings, run_clean

# docs/clean.md, "On FER-2013": defaults (phash, 8, threshold 6, blank std 5).
README_COUNTS = {
    "images": 32298,
    "flagged": 2937,
    "blank": 14,
    "corrupt": 0,
    "dedup": 2923,
    "groups": 2110,
    "exact_groups": 1272,
    "near_groups": 1133,
    "files_in_groups": 5033,
    "cross_split_groups": 503,
    "label_conflict_groups": 233,
}


@pytest.mark.fer2013
def test_counts_on_fer2013_match_the_readme(fer2013):
    result = run_clean(fer2013, CleanSettings(filters=["corrupt", "blank", "dedup"]))
    summary = result.summary()
    dups = summary["duplicates"]
    per_filter = summary["flagged"]["per_filter"]
    found = {
        "images": summary["images"]["total_before"],
        "flagged": summary["flagged"]["files"],
        "blank": per_filter["blank"],
        "corrupt": per_filter["corrupt"],
        "dedup": per_filter["dedup"],
        **{k: dups[k] for k in README_COUNTS if k in dups},
    }
    assert found == README_COUNTS
    # Leakage: every cross-split group keeps its test copy and flags the train ones.
    for group in result.groups:
        if group.cross_split:
            assert group.kept.startswith("test/")
    flagged_train = {f.path for f in result.flags if "cross-split" in f.reason}
    assert flagged_train and all(p.startswith("train/") for p in flagged_train)
