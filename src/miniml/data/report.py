"""Human-readable summaries of datasets (``data prepare``, ``show``, ``list``, ``push``, ``pull``)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from miniml.data.dataset import SPLITS, Dataset
from miniml.data.hub import RemoteDataset, Transfer


def counts_table(dataset: Dataset) -> Table:
    """Rows per label (one line per label) and split, with totals; rows per split for free-text targets."""
    manifest = dataset.manifest
    splits = [s for s in SPLITS if s in manifest.counts]
    table = Table(title=f"{dataset.name} rows", title_justify="left")
    table.add_column("label")
    for split in [*splits, "total"]:
        table.add_column(split, justify="right")
    labels = dataset.labels()
    for label in labels:
        row = [manifest.label_counts.get(s, {}).get(label, 0) for s in splits]
        table.add_row(label, *map(str, row), str(sum(row)))
    totals = [manifest.counts[s] for s in splits]
    table.add_row("all" if labels else "(free text)", *map(str, totals), str(sum(totals)), style="bold")
    return table


def dropped_table(dataset: Dataset) -> Table:
    """Dropped rows by reason."""
    table = Table(title="dropped", title_justify="left")
    table.add_column("reason")
    table.add_column("rows", justify="right")
    for reason, count in sorted(dataset.manifest.dropped.items()):
        table.add_row(reason, str(count))
    if not dataset.manifest.dropped:
        table.add_row("(none)", "0")
    return table


def print_summary(dataset: Dataset, console: Console | None = None, *, sources: bool = False) -> None:
    """Print the dataset's path, fingerprint, counts and drops (and its sources when asked)."""
    console = console or Console()
    manifest = dataset.manifest
    console.print(f"dataset: {dataset.path}", highlight=False, soft_wrap=True)
    console.print(f"fingerprint: {dataset.fingerprint}", highlight=False)
    console.print(counts_table(dataset))
    console.print(dropped_table(dataset))
    if sources:
        console.print(
            f"created {manifest.created_at}, miniml {manifest.miniml_version}, "
            f"cleaning v{manifest.cleaning_version}; columns: {', '.join(manifest.columns)}",
            highlight=False,
        )
        for src in manifest.sources:
            console.print(
                f"  {src.sha256[:12]}  {src.rows if src.rows is not None else '-':>6} rows  {src.uri}",
                highlight=False,
                soft_wrap=True,
            )


def transfer_line(done: Transfer, pushed: bool) -> str:
    """One line saying what ``data push`` / ``data pull`` did."""
    what = f"{done.name}/{done.fingerprint}"
    size = f"{done.files} files, {done.bytes / 1e6:.1f} MB"
    if pushed:
        if done.moved:
            return f"pushed {what} → {done.uri} ({size})"
        return f"already in the hub: {done.uri} (same fingerprint; nothing uploaded)"
    if done.moved:
        return f"pulled {done.uri} → {done.path} ({size}, every sha256 verified)"
    return f"already here: {done.path} (same fingerprint; nothing downloaded)"


def remote_table(datasets: list[RemoteDataset], where: str) -> Table:
    """Datasets in the hub: name, fingerprint, files, size, when pushed."""
    table = Table(title=f"datasets in {where}", title_justify="left")
    for column in ("name", "fingerprint", "files", "MB", "pushed (UTC)"):
        table.add_column(column, justify="right" if column in {"files", "MB"} else "left")
    for d in datasets:
        when = d.pushed.strftime("%Y-%m-%d %H:%M")
        table.add_row(d.name, d.fingerprint, str(d.files), f"{d.bytes / 1e6:.1f}", when)
    return table


def local_table(datasets: list[Dataset]) -> Table:
    """Datasets prepared or pulled into this MINIML_HOME."""
    table = Table(title="datasets", title_justify="left")
    for column in ("name", "fingerprint", "rows", "created", "path"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for d in datasets:
        rows = sum(d.manifest.counts.values())
        table.add_row(d.name, d.fingerprint, str(rows), d.manifest.created_at[:16], str(d.path))
    return table
