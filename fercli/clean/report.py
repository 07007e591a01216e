"""What `fercli clean` writes and shows: the report file (JSON, or CSV by suffix) and the
rich summary on the terminal."""

import csv
import io
import json
from pathlib import Path

from fercli.util import atomic_write_text

CSV_COLUMNS = ("path", "filter", "reason", "group", "kept")


def write_report(path, report: dict) -> str:
    """Write the report: CSV (one row per flag: path, filter, reason, group, kept, then one
    per unreadable file with filter "unreadable") when the file name ends in .csv, else JSON
    ({"summary", "flags", "groups"}, and "unreadable" where there are such files). Returns
    the format."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for flag in report["flags"]:
            writer.writerow({k: "" if flag[k] is None else flag[k] for k in CSV_COLUMNS})
        for item in report.get("unreadable", []):  # never flagged: left in place
            row = {"path": item["path"], "filter": "unreadable", "reason": item["reason"]}
            writer.writerow(row)
        atomic_write_text(path, out.getvalue())
        return "csv"
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    return "json"


def render_summary(summary: dict, console) -> None:
    """The summary as rich tables: counts before and after, filters, duplicates, examples."""
    from rich.table import Table

    images, flagged, dups = summary["images"], summary["flagged"], summary["duplicates"]
    mode = summary.get("mode", "dry-run")
    console.print(
        f"[bold]fercli clean[/bold] {summary['root']}: {images['total_before']:,} images, "
        f"[bold]{flagged['files']:,}[/bold] flagged, {images['total_after']:,} kept"
        + (" (dry run: no file touched)" if mode == "dry-run" else "")
    )
    splits = list(images["before"])
    classes = list(next(iter(images["before"].values()), {}))
    table = Table("class", *[f"{s} before → after" for s in splits], title="Images")
    for c in classes:
        row = []
        for s in splits:
            before, after = images["before"][s][c], images["after"][s][c]
            row.append(f"{before:,} → {after:,}" if before != after else f"{before:,}")
        table.add_row(c, *row)
    table.add_row(
        "[bold]all[/bold]",
        *[
            f"{sum(images['before'][s].values()):,} → {sum(images['after'][s].values()):,}"
            for s in splits
        ],
    )
    console.print(table)

    table = Table("filter", "files", "example", title="Flagged by filter")
    for name, count in flagged["per_filter"].items():
        example = summary["examples"].get(name) or []
        text = f"{example[0]['path']}: {example[0]['reason']}" if example else "-"
        table.add_row(name, f"{count:,}", text)
    console.print(table)
    if "unreadable" in summary:
        unreadable = summary["unreadable"]
        console.print(
            f"[bold]{unreadable['files']:,}[/bold] file(s) could not be read (not corrupt: "
            "never quarantined, left in place): "
            + ", ".join(f"{u['path']}: {u['reason']}" for u in unreadable["examples"])
            + (" ..." if unreadable["files"] > len(unreadable["examples"]) else ""),
            highlight=False,
        )

    if "dedup" in summary["filters"]:
        console.print(
            f"Duplicates: {dups['groups']:,} groups ({dups['files_in_groups']:,} files): "
            f"{dups['exact_groups']:,} sets of pixel-identical files, "
            f"{dups['near_groups']:,} groups with near duplicates; "
            f"[bold]{dups['cross_split_groups']:,}[/bold] span splits (leakage: the "
            f"evaluation copy is kept), [bold]{dups['label_conflict_groups']:,}[/bold] "
            f"have conflicting labels."
        )
        if "near_pairs_checked" in dups:
            console.print(
                f"Near duplicates verified on their pixels: {dups['near_pairs_checked']:,} "
                f"candidate pairs checked, [bold]{dups['near_pairs_rejected']:,}[/bold] rejected "
                f"as different photos (--no-verify: the hash alone decides)."
            )
        for key, what in (("cross_split", "Cross-split"), ("label_conflict", "Label conflict")):
            for ex in summary["examples"].get(key, []):
                more = ex["size"] - len(ex["copies"])
                console.print(
                    f"  {what} group {ex['group']}: {', '.join(ex['copies'])}"
                    + (f" and {more} more" if more > 0 else "")
                    + f"; kept: {ex['kept'] or 'none'}",
                    highlight=False,
                )
    _render_outcome(summary, console)


def _render_outcome(summary: dict, console) -> None:
    if "quarantine" in summary:
        q = summary["quarantine"]
        console.print(
            f"Moved {q['moved']:,} file(s) to {q['folder']} (run {q['run_id']}). "
            f"Undo: [bold]{q['undo']}[/bold]"
        )
    elif "output" in summary:
        o = summary["output"]
        console.print(
            f"Wrote a cleaned copy of {o['files']:,} file(s) to {o['output']} "
            f"({o['linked']:,} hard-linked, {o['copied']:,} copied); the source is untouched."
        )
    elif not summary["flagged"]["files"]:
        console.print("Nothing to flag.")
    else:
        console.print(
            "Nothing was moved. Look with --contact-sheet FILE.png and --report FILE, then "
            "run again with --apply (undo with --undo RUN_ID) or --output DIR."
        )
    if summary.get("report"):
        console.print(f"Report: {summary['report']}")
    if summary.get("contact_sheet"):
        console.print(f"Contact sheet: {summary['contact_sheet']}")
