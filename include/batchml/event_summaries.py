"""Day summaries of an events source, kept on disk by content: a daily event feature run reads one new day of raw
events instead of a month (issue 17).

The event feature job (batchml.event_features) reads most of its history as whole days: a card's 28 usual days,
the days of its lookback, a merchant's matured label days. The runs for D and D + 1 share all but one of them, so
each whole day is summarised once (one row per group and day: counts, sums, last time, values seen, the usual
column's count, sum and spread) into one Parquet file:

    <root>/<source>/<group_by>-<definition hash>/dt=YYYY-MM-DD/<content hash>.parquet

The definition hash covers what a row holds (source, columns and their types, the summary's version); the content
hash covers the raw partitions the day's events are read from (each file's name, size and modification time). A
re-delivered partition therefore gets a new content hash and its day is summarised again: nothing is updated in
place, and a stale summary is never read. Files are written aside and moved into place by one rename, so a run
never reads half a file, and two runs summarising the same day write the same rows. The whole folder can be
deleted at any time; runs rebuild what they need (`BATCHML_DATA_ROOT/event_summaries` by default).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from batchml.storage import partition_name

SUMMARY_VERSION = 1
"""Bump when a summary row's meaning changes: every cached day is then summarised again."""


def definition_key(**parts) -> str:
    """A short hash of everything that decides a summary row's meaning."""
    text = json.dumps({"version": SUMMARY_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def content_key(partitions: list[Path]) -> str | None:
    """A short hash of the files of `partitions` (path, size, modification time); None when one has not landed."""
    listing = []
    for folder in partitions:
        if not folder.is_dir():
            return None
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_file() and not entry.name.startswith((".", "_")):
                st = entry.stat()
                listing.append((str(folder.resolve()), entry.name, st.st_size, st.st_mtime_ns))
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DaySummaryStore:
    """The summaries of one events source and group, for one definition."""

    root: Path
    source: str
    group_by: str
    definition: str

    @property
    def folder(self) -> Path:
        return self.root / self.source / f"{self.group_by}-{self.definition}"

    def file(self, day: dt.date, content: str) -> Path:
        return self.folder / partition_name(day) / f"{content}.parquet"

    def scratch(self) -> Path:
        """A fresh folder for a Spark write, on the same file system as the summaries (renames stay atomic)."""
        return self.folder / f"_tmp-{uuid.uuid4().hex}"

    def publish(self, written: Path, day: dt.date, content: str) -> Path:
        """Move a written file into place in one rename (an existing file of the same content is replaced by the
        same rows)."""
        target = self.file(day, content)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(written, target)
        return target

    @staticmethod
    def discard(scratch: Path) -> None:
        shutil.rmtree(scratch, ignore_errors=True)
