"""`fercli clean` on the real FER-2013 copy: the counts docs/clean.md reports (skipped where the
data is absent)."""

import pytest

from fercli.clean.pipeline import CleanSettings, run_clean

# docs/clean.md, "On FER-2013": defaults (phash, 8, threshold 6, blank std 5, near
# duplicates verified on their pixels at fercli.clean.near_verify's default threshold;
# docs/near-duplicates.md).
README_COUNTS = {
    "images": 32298,
    "flagged": 2840,
    "blank": 14,
    "corrupt": 0,
    "dedup": 2826,
    "groups": 2030,
    "exact_groups": 1272,
    "near_groups": 1049,
    "files_in_groups": 4856,
    "cross_split_groups": 480,
    "label_conflict_groups": 176,
    "near_pairs_checked": 2041,
    "near_pairs_rejected": 151,
}
# The same with --no-verify: the hash alone decides (the counts before verification).
UNVERIFIED_COUNTS = {
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


def counts(summary: dict, keys) -> dict:
    dups = summary["duplicates"]
    per_filter = summary["flagged"]["per_filter"]
    return {
        "images": summary["images"]["total_before"],
        "flagged": summary["flagged"]["files"],
        "blank": per_filter["blank"],
        "corrupt": per_filter["corrupt"],
        "dedup": per_filter["dedup"],
        **{k: dups[k] for k in keys if k in dups},
    }


@pytest.mark.fer2013
def test_counts_on_fer2013_match_the_readme(fer2013):
    result = run_clean(fer2013, CleanSettings(filters=["corrupt", "blank", "dedup"]))
    assert counts(result.summary(), README_COUNTS) == README_COUNTS
    # Leakage: every cross-split group keeps its test copy and flags the train ones.
    for group in result.groups:
        if group.cross_split:
            assert group.kept.startswith("test/")
    flagged_train = {f.path for f in result.flags if "cross-split" in f.reason}
    assert flagged_train and all(p.startswith("train/") for p in flagged_train)


@pytest.mark.fer2013
def test_counts_on_fer2013_without_verification(fer2013):
    settings = CleanSettings(filters=["corrupt", "blank", "dedup"], verify=False)
    summary = run_clean(fer2013, settings).summary()
    assert "near_pairs_checked" not in summary["duplicates"]
    assert counts(summary, UNVERIFIED_COUNTS) == UNVERIFIED_COUNTS
