"""Running suites with Great Expectations: a file-backed GX project whose Data Docs site every run updates, pandas
DataFrames validated in memory, warehouse tables validated in place, and failures that fail loudly, listing every
failed expectation with a sample of offending values. A failed validation never passes silently.
"""

from __future__ import annotations

import fcntl
import gc
import logging
import os
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from batchml.errors import DataValidationError, SpecError
from batchml.validation.suites import Expectation

log = logging.getLogger(__name__)


@dataclass
class ValidationReport:
    suite: str
    success: bool
    evaluated: int
    rows: int
    failures: list[dict] = field(default_factory=list)
    data_docs: str | None = None
    where: list[str] = field(default_factory=list)
    """What exactly failed, when the suite ran on several parts (e.g. `dt=2026-06-21 (.../part-0.parquet): ...`)."""
    partitions_validated: int = 0
    partitions_unchanged: int = 0
    """Raw partitions: validated by this run, and skipped because they passed with the same content and suite."""

    def summary(self) -> str:
        status = "passed" if self.success else f"FAILED ({len(self.failures)} of {self.evaluated} expectations)"
        return f"{self.suite}: {status} on {self.rows:,} rows"


def _gx_class(name: str):
    import great_expectations.expectations as gxe

    cls_name = "".join(part.capitalize() for part in name.split("_"))
    cls = getattr(gxe, cls_name, None)
    if cls is None:
        raise SpecError(f"unknown Great Expectations expectation {name!r} (no class {cls_name} in GX 1.x)")
    return cls


@contextmanager
def _locked(gx_root: Path):
    """Serialize writes to the file-backed GX project: parallel backfill runs share its JSON stores."""
    gx_root.mkdir(parents=True, exist_ok=True)
    with open(gx_root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _failure(result) -> dict:
    cfg = result.expectation_config
    res = result.result or {}
    details: dict = {}
    for key in ("observed_value", "unexpected_count", "unexpected_percent", "partial_unexpected_list"):
        if key in res and res[key] is not None:
            details[key] = res[key]
    exc = (result.exception_info or {}) if hasattr(result, "exception_info") else {}
    if isinstance(exc, dict) and exc.get("raised_exception"):
        details["error"] = str(exc.get("exception_message"))[:200]
    kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id", "result_format")}
    return {"expectation": cfg.type, "column": kwargs.pop("column", None), "kwargs": kwargs, **details}


def _gx_context(gx_root: Path):
    """The file-backed GX project (suites, results, Data Docs) under `gx_root`; call with the lock held."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no phone-home from workers on a closed network
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(gx_root.parent))  # GX adds the gx/ folder
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _gx_expectations(suite_name: str, expectations: list[Expectation]) -> list:
    out = []
    for name, kwargs in expectations:
        try:
            out.append(_gx_class(name)(**kwargs))
        except SpecError:
            raise
        except Exception as exc:  # pydantic validation of the expectation's arguments
            raise SpecError(f"suite {suite_name}: expectation {name} with {kwargs}: invalid arguments ({exc})") from None
    return out


SUMMARY = {"result_format": "SUMMARY", "partial_unexpected_count": 5}
LARGE_FRAME_ROWS = 250_000
"""A validation run leaves reference cycles that hold its frame (GX's validator and metric objects): the cyclic
collector, which counts objects, not bytes, frees them only much later, so the raw checks of a history kept every
batch they had validated (8 GB at 1M customers). After a frame this large, they are collected at once."""
BOOLEAN_ONLY = {"result_format": "BOOLEAN_ONLY", "return_unexpected_index_query": False}
"""A suite's first pass: GX's SUMMARY and COMPLETE formats copy the whole frame for every column expectation (to
list the unexpected rows' indices and values, even when there are none): most of a passing suite's time on a
million rows, and transient copies of the whole batch."""


def _run_checkpoint(context, suite_name: str, batch, expectations: list[Expectation], label: str,
                    batch_parameters: dict | None = None, result_format: dict | None = None):
    """Suite, validation definition and checkpoint (get-or-update, so re-runs are idempotent), run once with a
    Data Docs update; returns (the validation result, its Data Docs URL, the suite's expectation ids in order)."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    suite = context.suites.add_or_update(
        gx.ExpectationSuite(name=suite_name, expectations=_gx_expectations(suite_name, expectations)))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite_name, data=batch, suite=suite))
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(name=suite_name, validation_definitions=[definition],
                      actions=[UpdateDataDocsAction(name="update_data_docs")],
                      result_format=result_format or SUMMARY))
    result = checkpoint.run(batch_parameters=batch_parameters,
                            run_id=gx.core.run_identifier.RunIdentifier(run_name=label))
    (identifier, validation), = result.run_results.items()
    urls = context.get_docs_sites_urls(resource_identifier=identifier)
    return validation, (urls[0]["site_url"] if urls else None), [e.id for e in suite.expectations]


def _run_failures_again(context, suite_name: str, batch, expectations: list[Expectation], label: str,
                        batch_parameters: dict | None, result_format: dict | None):
    """The suite with BOOLEAN_ONLY results; if anything failed, the failed expectations again with `result_format`
    (SUMMARY when None). Returns (the validation to report, its Data Docs URL, how many expectations ran)."""
    validation, docs, ids = _run_checkpoint(context, suite_name, batch, expectations, label, batch_parameters,
                                            BOOLEAN_ONLY)
    evaluated = len(validation.results)
    if not validation.success:
        position = {expectation_id: i for i, expectation_id in enumerate(ids)}
        failed = sorted(position[r.expectation_config.id] for r in validation.results if not r.success)
        validation, docs, _ = _run_checkpoint(context, suite_name, batch, [expectations[i] for i in failed], label,
                                              batch_parameters, result_format)
    return validation, docs, evaluated


def _report(suite_name: str, validation, rows: int, docs: str | None, evaluated: int) -> ValidationReport:
    failures = [_failure(r) for r in validation.results if not r.success]
    report = ValidationReport(suite_name, bool(validation.success), evaluated, rows, failures, docs)
    log.info("%s; Data Docs: %s", report.summary(), docs)
    return report


def run_suite(df, suite_name: str, expectations: list[Expectation], gx_root: Path, label: str,
              index_column: str | None = None) -> ValidationReport:
    """Validate a pandas DataFrame with a file-backed GX checkpoint that updates Data Docs. With `index_column`, each
    failure also counts the unexpected rows per value of that column (`unexpected_by`; None when GX lists no rows).

    The suite runs first with GX's BOOLEAN_ONLY format; if anything fails, the failed expectations run again on the
    same frame with samples of the offending values (and, with `index_column`, every unexpected row's value of it),
    and that run is the one the report and Data Docs show for them."""
    with _locked(gx_root):
        context = _gx_context(gx_root)
        datasource = context.data_sources.add_or_update_pandas("batchml")
        try:
            asset = datasource.get_asset(suite_name)
        except LookupError:
            asset = datasource.add_dataframe_asset(suite_name)
        try:
            batch = asset.get_batch_definition("whole")
        except (KeyError, LookupError):
            batch = asset.add_batch_definition_whole_dataframe("whole")
        result_format = None if index_column is None else {
            "result_format": "COMPLETE", "unexpected_index_column_names": [index_column],
            "return_unexpected_index_query": False}
        validation, docs, evaluated = _run_failures_again(context, suite_name, batch, expectations, label,
                                                          {"dataframe": df}, result_format)
    if len(df) >= LARGE_FRAME_ROWS:
        gc.collect()
    report = _report(suite_name, validation, len(df), docs, evaluated)
    if index_column is not None:
        for failure, result in zip(report.failures, [r for r in validation.results if not r.success], strict=True):
            rows = (result.result or {}).get("unexpected_index_list")
            failure.pop("unexpected_list", None)
            failure["unexpected_by"] = None if rows is None else dict(Counter(str(r.get(index_column)) for r in rows))
    return report


def raise_for_failures(report: ValidationReport, what_next: str) -> None:
    """Fail loudly: one line per failed expectation with what was observed and a sample of offending values."""
    if report.success:
        return
    lines = [f"Great Expectations: {report.summary()}. Nothing was published."]
    if report.where:
        lines += report.where
        lines.append(what_next)
        raise DataValidationError("\n".join(lines), failures=report.failures, data_docs=report.data_docs)
    lines += failure_lines(report.failures)
    if report.data_docs:
        lines.append(f"Data Docs: {report.data_docs}")
    lines.append(what_next)
    raise DataValidationError("\n".join(lines), failures=report.failures, data_docs=report.data_docs)


def raise_for_reports(reports: list[ValidationReport], what_next: str) -> None:
    """Fail loudly for every failed report at once (e.g. every source of a feature run), or return."""
    failed = [r for r in reports if not r.success]
    if len(failed) == 1:
        raise_for_failures(failed[0], what_next)
    if failed:
        lines = [f"Great Expectations: {len(failed)} suites failed. Nothing was published."]
        for report in failed:
            lines.append(f"{report.summary()}:")
            lines += report.where or failure_lines(report.failures)
        docs = next((r.data_docs for r in failed if r.data_docs), None)
        if docs and not any(r.where for r in failed):
            lines.append(f"Data Docs: {docs}")
        lines.append(what_next)
        raise DataValidationError("\n".join(lines), failures=[f for r in failed for f in r.failures], data_docs=docs)


def _short(value, limit: int = 80):
    """A sample value as shown in a message: long text is cut (a runaway value can be megabytes)."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}... ({len(value):,} characters)"
    return value


def failure_lines(failures: list[dict], indent: str = "  ") -> list[str]:
    """One line per failed expectation: its arguments, what was observed, a sample of offending values."""
    lines = []
    for f in failures:
        column = f" on {f['column']}" if f.get("column") else ""
        args = ", ".join(f"{k}={v!r}" for k, v in f["kwargs"].items())
        seen = []
        if "unexpected_count" in f:
            seen.append(f"{f['unexpected_count']} unexpected ({f.get('unexpected_percent', 0):.2f}%)")
        if f.get("partial_unexpected_list"):
            seen.append(f"sample: {[_short(v) for v in f['partial_unexpected_list'][:5]]}")
        if "observed_value" in f:
            seen.append(f"observed: {str(f['observed_value'])[:200]}")
        if "error" in f:
            seen.append(f"error: {f['error']}")
        args = f" ({args})" if args else ""
        lines.append(f"{indent}- {f['expectation']}{column}{args}: {'; '.join(seen) or 'failed'}")
    return lines




def run_sql_suite(engine, table: str, suite_name: str, expectations: list[Expectation], gx_root: Path,
                  label: str) -> ValidationReport:
    """Validate a warehouse table in place (the queries run in the database: memory stays flat)."""
    # GX stores datasource configs on disk: keep the URL (and any password in it) out of them
    os.environ["BATCHML_GX_WAREHOUSE_URL"] = engine.url.render_as_string(hide_password=False)
    with _locked(gx_root):
        context = _gx_context(gx_root)
        datasource = context.data_sources.add_or_update_sql(
            "batchml_warehouse", connection_string="${BATCHML_GX_WAREHOUSE_URL}")
        try:
            datasource.delete_asset(table)
        except LookupError:
            pass
        batch = datasource.add_table_asset(name=table, table_name=table).add_batch_definition_whole_table("whole")
        validation, docs, evaluated = _run_failures_again(context, suite_name, batch, expectations, label, None, None)
        # they point at a staging table that is about to go: remove them, checkpoint first (it refers to the rest)
        context.checkpoints.delete(suite_name)
        context.validation_definitions.delete(suite_name)
        datasource.delete_asset(table)
    from batchml.warehouse import count_rows

    return _report(suite_name, validation, count_rows(engine, table), docs, evaluated)


def is_row_wise(name: str) -> bool:
    """Whether an expectation judges each row (or pair of columns of a row) on its own, so that it means the same on
    one partition or on several concatenated (not null, in set, between, lengths, ...). Uniqueness and table-level
    expectations (row counts, means) do not."""
    from great_expectations.expectations.expectation import ColumnMapExpectation, ColumnPairMapExpectation

    cls = _gx_class(name)
    return issubclass(cls, ColumnMapExpectation | ColumnPairMapExpectation) and "unique" not in name
