"""Every raw partition a run reads is validated, once per content.

A partition's result is recorded under the SHA-256 of each of its files and the hash of the suite that checked it
(`<data_root>/validation_cache/<source>/dt=D.json`), and reused while both are unchanged: a daily run validates
the day that just landed; a training run over twelve snapshots validates each distinct partition once; a
re-delivered file or a changed spec is validated again. A failure is never recorded, so every run that needs the
partition fails until it is fixed.

How: partitions not yet validated are read with pyarrow (a corrupt file or a wrong physical type fails here, naming
the file), checked for timestamps outside their day, then validated with GX in batches of concatenated partitions
for the row-wise expectations (one GX run for many small partitions, strict: without `mostly`). A partition whose
unexpected rows in a failed batch stay within the expectation's `mostly` passes (GX's rule, applied to the
partition's own counts: a drifted category under its tolerance costs no second run). Any other partition of a
failed batch, or with a schema problem, an empty required partition, or an expectation that is not row-wise
(uniqueness, row counts), is validated on its own with the full suite, so that a failure names the source, the
partition date, the file, the expectation and sample values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from batchml.errors import LandingError
from batchml.specs import UseCaseSpec
from batchml.storage import partition_name, read_parquet_files
from batchml.validation.gx import ValidationReport, failure_lines, is_row_wise, run_suite
from batchml.validation.suites import Expectation, event_time_failures, raw_suite, schema_failures

log = logging.getLogger(__name__)

BATCH_ROWS = 2_000_000
"""Rows validated in one GX run (partitions are concatenated up to this many): bounds memory at any scale."""
PARTITION_COLUMN = "__partition"


def suite_hash(expectations: list[Expectation]) -> str:
    return hashlib.sha256(json.dumps(expectations, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Partition:
    source: str
    day: dt.date
    folder: Path
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256

    @property
    def label(self) -> str:
        return partition_name(self.day)


class ValidationCache:
    """Results of raw partitions by content: one small JSON file per partition, replaced atomically."""

    def __init__(self, root: Path | None):
        self.root = root

    def _path(self, source: str, day: dt.date) -> Path:
        return self.root / source / f"{partition_name(day)}.json"

    def _read(self, source: str, day: dt.date) -> dict:
        if self.root is None:
            return {}
        try:
            return json.loads(self._path(source, day).read_text())
        except (OSError, ValueError):
            return {}

    def _write(self, source: str, day: dt.date, entry: dict) -> None:
        path = self._path(source, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(entry, indent=1, default=str))
        os.replace(tmp, path)

    def fingerprint(self, source: str, day: dt.date, folder: Path) -> dict[str, str]:
        """SHA-256 of every data file of a partition; reused from the cache while a file's size and modification
        time are unchanged (hashing gigabytes on every run would cost more than validating)."""
        known = self._read(source, day).get("stat", {})
        out, stat = {}, {}
        files = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith((".", "_"))) \
            if folder.is_dir() else []
        for f in files:
            st = f.stat()
            key = f"{st.st_size}-{st.st_mtime_ns}"
            cached = known.get(f.name)
            if cached and cached[0] == key:
                digest = cached[1]
            else:
                h = hashlib.sha256()
                with open(f, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        h.update(block)
                digest = h.hexdigest()
            out[f.name], stat[f.name] = digest, (key, digest)
        self._stat = getattr(self, "_stat", {})
        self._stat[(source, day)] = stat
        return out

    def passed(self, part: Partition, suite: str) -> bool:
        entry = self._read(part.source, part.day)
        return entry.get("files") == part.files and suite in entry.get("passed", {})

    def record(self, part: Partition, suite: str, rows: int) -> None:
        if self.root is None:
            return
        entry = self._read(part.source, part.day)
        if entry.get("files") != part.files:
            entry = {"files": part.files, "passed": {}}
        entry["stat"] = getattr(self, "_stat", {}).get((part.source, part.day), entry.get("stat", {}))
        entry["passed"][suite] = {"rows": rows, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        self._write(part.source, part.day, entry)


def _read(part: Partition, columns: list[str] | None = None):
    """The partition as one Arrow table (None when it holds no data file); LandingError names a corrupt file."""
    return read_parquet_files(part.folder, list(part.files), columns,
                              where=f"Source {part.source!r}, partition {part.label}: ")


def batch_suite(suite: list[Expectation]) -> tuple[list[Expectation], bool]:
    """The suite as it runs on several partitions concatenated (with their date in PARTITION_COLUMN), and whether a
    pass means that every partition passes the suite on its own: row-wise checks without tolerance (`mostly`
    applies per partition, so the batch allows no unexpected row at all: stricter, never more lenient), uniqueness
    per partition, the column set and row counts checked apart in Python. An extra table-level expectation (a
    row count, a mean) cannot run on a batch: the partitions are then validated one by one."""
    out: list[Expectation] = []
    exact = True
    for name, kwargs in suite:
        if name == "expect_column_values_to_be_unique":
            out.append(("expect_compound_columns_to_be_unique",
                        {"column_list": [kwargs["column"], PARTITION_COLUMN]}))
        elif name == "expect_table_columns_to_match_set" or (
                name == "expect_table_row_count_to_be_between" and kwargs == {"min_value": 1}):
            continue  # checked in Python on each partition's Arrow table
        elif is_row_wise(name):
            out.append((name, {k: v for k, v in kwargs.items() if k != "mostly"}))
        else:
            exact = False
    return out, exact


def mostly_tolerances(suite: list[Expectation]) -> dict[tuple[str, str], float]:
    """`mostly` of each single-column row-wise expectation of the suite that has one (below 1), by (expectation,
    column): what a partition may hold of unexpected rows and still pass. Not-null checks count every row rather
    than the non-null ones, and an expectation listed twice for a column is ambiguous: neither is included."""
    seen: dict[tuple[str, str], list[float | None]] = {}
    for name, kwargs in suite:
        if "column" in kwargs and is_row_wise(name):
            seen.setdefault((name, kwargs["column"]), []).append(kwargs.get("mostly"))
    return {key: values[0] for key, values in seen.items()
            if len(values) == 1 and values[0] is not None and values[0] < 1
            and key[0] != "expect_column_values_to_not_be_null"}


def mostly_success(considered: int, unexpected: int, mostly: float) -> bool:
    """GX's own rule for a column map expectation: vacuously true without a non-null value, else the share of
    expected values among the non-null ones is at least `mostly`."""
    return considered == 0 or (considered - unexpected) / considered >= mostly


@dataclass
class SourceResult:
    """What validating one source's partitions found."""

    report: ValidationReport
    validated: int = 0
    cached: int = 0


def validate_source(spec: UseCaseSpec, source: str, raw_root: Path, days: list[dt.date], gx_root: Path, label: str,
                    cache: ValidationCache) -> SourceResult:
    """Validate every partition of `source` in `days` that has not passed this suite with this content before."""
    import pandas as pd

    suite = raw_suite(spec, source)
    key = suite_hash(suite)
    name = f"{spec.name}.raw.{source}"
    src = spec.sources[source]
    parts = []
    for day in days:
        folder = raw_root / source / partition_name(day)
        if not folder.is_dir():
            raise LandingError(f"{folder}: partition {source}/{partition_name(day)} has not landed. Land it (or "
                               "re-run the upstream ingestion), then clear this task.")
        parts.append(Partition(source, day, folder, cache.fingerprint(source, day, folder)))
    todo = [p for p in parts if not cache.passed(p, key)]
    result = SourceResult(ValidationReport(name, True, len(suite), 0), cached=len(parts) - len(todo))
    if not todo:
        result.report.partitions_unchanged = result.cached
        return result
    batched, whole = batch_suite(suite)
    tolerances = mostly_tolerances(suite)

    single: list[tuple[Partition, object]] = []  # validated on their own, with the full suite
    batch: list[tuple[Partition, object]] = []
    batch_rows = 0

    def flush() -> None:
        nonlocal batch, batch_rows
        if not batch:
            return
        frame = pd.concat([t.to_pandas().assign(**{PARTITION_COLUMN: p.label}) for p, t in batch], ignore_index=True)
        report = run_suite(frame, name, batched, gx_root, label, index_column=PARTITION_COLUMN)
        # a partition whose unexpected rows stay within the expectation's `mostly` passes it, as GX would judge the
        # partition alone; any other partition with an unexpected row is validated on its own (its own samples),
        # and a failure that names no rows (an error) sends the whole batch there
        suspects, tolerated = set(), set()
        labels = {p.label for p, _ in batch}
        for failure in report.failures:
            counts = failure.get("unexpected_by")
            if not counts or not set(counts) <= labels:
                suspects |= labels  # no rows named, or names that are not the batch's partitions: re-check them all
                continue
            mostly = tolerances.get((failure["expectation"], failure.get("column")))
            considered = frame.groupby(PARTITION_COLUMN)[failure["column"]].count() if mostly is not None else None
            for part_label, unexpected in counts.items():
                if mostly is not None and mostly_success(int(considered.get(part_label, 0)), unexpected, mostly):
                    tolerated.add(part_label)
                else:
                    suspects.add(part_label)
        del frame
        if tolerated - suspects:
            log.info("%s: %d partition(s) within the `mostly` tolerance of their failed batch expectation(s)",
                     name, len(tolerated - suspects))
        for p, t in batch:
            if p.label in suspects:
                single.append((p, t))
            else:
                cache.record(p, key, t.num_rows)
                result.validated += 1
                result.report.rows += t.num_rows
        batch, batch_rows = [], 0

    for part in todo:
        table = _read(part)
        problems = [] if table is None else schema_failures(table.schema, src.columns) + \
            event_time_failures(table, spec, source, part.day)
        columns_ok = table is not None and sorted(table.column_names) == sorted(src.columns)
        empty_required = src.require_rows and (table is None or table.num_rows == 0)
        if table is None or problems or not columns_ok or empty_required or not whole:
            single.append((part, table))
            continue
        batch.append((part, table))
        batch_rows += table.num_rows
        if batch_rows >= BATCH_ROWS:
            flush()
    flush()

    failed: list[str] = []
    for part, table in single:
        if table is None:
            failures = [{"expectation": "partition_holds_a_parquet_file", "column": None, "kwargs": {},
                         "observed_value": f"no *.parquet file in {part.folder}"}]
        else:
            report = run_suite(table.to_pandas(), name, suite, gx_root, label)
            problems = schema_failures(table.schema, src.columns) + event_time_failures(table, spec, source, part.day)
            failures = report.failures + problems
            result.report.rows += table.num_rows
            result.report.evaluated = report.evaluated
            result.report.data_docs = report.data_docs or result.report.data_docs
        if failures:
            files = ", ".join(str(part.folder / f) for f in part.files) or f"{part.folder} (no data file)"
            failed.append(f"  partition {part.label} of {source!r}: {files}")
            failed += failure_lines(failures, indent="    ")
            result.report.failures += [{**f, "partition": part.label} for f in failures]
        else:
            cache.record(part, key, table.num_rows)
            result.validated += 1
    if failed:
        result.report.success = False
        result.report.where = failed + ([f"Data Docs: {result.report.data_docs}"] if result.report.data_docs else [])
    log.info("%s: %d partition(s) validated now, %d unchanged since validated, %d failed", name, result.validated,
             result.cached, len(todo) - result.validated)
    result.report.partitions_validated, result.report.partitions_unchanged = result.validated, result.cached
    return result
