"""Great Expectations suites derived from the spec, run on raw partitions, feature tables and (later) scores.

Suites are plain lists of (expectation name, kwargs) built without importing GX (its import costs seconds), so
they can be inspected and unit-tested cheaply; `run_suite` turns them into GX objects, validates a DataFrame
through a checkpoint that updates the Data Docs site, and `raise_for_failures` fails the task listing every failed
expectation with a sample of offending values. A failed validation never passes silently.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from batchml.errors import DataValidationError, LandingError, SpecError
from batchml.specs import ColumnSpec, ExpectationSpec, UseCaseSpec

log = logging.getLogger(__name__)

Expectation = tuple[str, dict]
"""A GX expectation by snake_case name, e.g. ("expect_column_values_to_not_be_null", {"column": "id"})."""



def _arrow_type_ok(logical: str, arrow_type) -> bool:
    import pyarrow as pa

    checks = {
        "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
        "int": pa.types.is_integer,
        "double": pa.types.is_floating,
        "timestamp": lambda t: pa.types.is_timestamp(t) and t.tz in ("UTC", "+00:00", "Etc/UTC"),
        "date": pa.types.is_date,
        "bool": pa.types.is_boolean,
    }
    return checks[logical](arrow_type)


def schema_failures(arrow_schema, columns: dict[str, ColumnSpec]) -> list[dict]:
    """Declared columns whose landed Arrow type does not match (GX's pandas type checks misread pandas 3 dtypes)."""
    failures = []
    for name, col in columns.items():
        if name in arrow_schema.names:
            landed = arrow_schema.field(name).type
            if not _arrow_type_ok(col.type, landed):
                failures.append(
                    {"expectation": "column_type_matches_spec", "column": name,
                     "kwargs": {"type": col.type}, "observed_value": str(landed)}
                )
    return failures


# Suites ----------------------------------------------------------------------------------------------------------


def column_expectations(name: str, col: ColumnSpec) -> list[Expectation]:
    """Expectations implied by one declared column."""
    out: list[Expectation] = []
    if not col.nullable:
        out.append(("expect_column_values_to_not_be_null", {"column": name}))
    if col.unique:
        out.append(("expect_column_values_to_be_unique", {"column": name}))
    if col.allowed is not None:
        out.append(("expect_column_values_to_be_in_set", {"column": name, "value_set": col.allowed, "mostly": col.mostly}))
    if col.min is not None or col.max is not None:
        out.append(
            ("expect_column_values_to_be_between",
             {"column": name, "min_value": col.min, "max_value": col.max, "mostly": col.mostly})
        )
    return out


def _extra(specs: list[ExpectationSpec]) -> list[Expectation]:
    return [(e.expectation, dict(e.kwargs)) for e in specs]


def raw_suite(spec: UseCaseSpec, source: str) -> list[Expectation]:
    """Schema, types, nulls, ranges, allowed values, key uniqueness and (if declared) non-emptiness of a source."""
    src = spec.sources[source]
    out: list[Expectation] = [
        ("expect_table_columns_to_match_set", {"column_set": list(src.columns), "exact_match": True})
    ]
    if src.require_rows:
        out.append(("expect_table_row_count_to_be_between", {"min_value": 1}))
    for name, col in src.columns.items():
        out += column_expectations(name, col)
    return out + _extra(spec.expectations.raw.get(source, []))


def feature_suite(spec: UseCaseSpec, as_of: dt.date, expected_rows: int) -> list[Expectation]:
    """One row per active entity, the declared columns, no nulls, values in their natural ranges."""
    from batchml.features import AS_OF_COLUMN, feature_columns

    key = spec.entity.key
    features = feature_columns(spec)
    columns = [key, AS_OF_COLUMN, *features]
    out: list[Expectation] = [
        ("expect_table_columns_to_match_set", {"column_set": columns, "exact_match": True}),
        ("expect_table_row_count_to_equal", {"value": expected_rows}),
        ("expect_column_values_to_not_be_null", {"column": key}),
        ("expect_column_values_to_be_unique", {"column": key}),
        # validated as ISO text: GX stores value sets as JSON
        ("expect_column_values_to_be_in_set", {"column": AS_OF_COLUMN, "value_set": [as_of.isoformat()]}),
    ]
    entity_cols = spec.entity_source.columns
    for name, kind in features.items():
        out.append(("expect_column_values_to_not_be_null", {"column": name}))
        if kind == "categorical":
            allowed = entity_cols[name].allowed
            if allowed is not None:
                out.append(
                    ("expect_column_values_to_be_in_set",
                     {"column": name, "value_set": allowed, "mostly": entity_cols[name].mostly})
                )
        elif kind == "share":
            out.append(("expect_column_values_to_be_between", {"column": name, "min_value": 0.0, "max_value": 1.0}))
        elif kind == "numeric":
            col = entity_cols[name]
            if col.min is not None or col.max is not None:
                out.append(("expect_column_values_to_be_between",
                            {"column": name, "min_value": col.min, "max_value": col.max, "mostly": col.mostly}))
        else:
            out.append(("expect_column_values_to_be_between", {"column": name, "min_value": 0}))
    return out + _extra(spec.expectations.features)


# Running ---------------------------------------------------------------------------------------------------------


@dataclass
class ValidationReport:
    suite: str
    success: bool
    evaluated: int
    rows: int
    failures: list[dict] = field(default_factory=list)
    data_docs: str | None = None

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


def run_suite(df, suite_name: str, expectations: list[Expectation], gx_root: Path, label: str) -> ValidationReport:
    """Validate a pandas DataFrame with a file-backed GX checkpoint that updates Data Docs."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no phone-home from workers on a closed network
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    gx_objects = []
    for name, kwargs in expectations:
        try:
            gx_objects.append(_gx_class(name)(**kwargs))
        except SpecError:
            raise
        except Exception as exc:  # pydantic validation of the expectation's arguments
            raise SpecError(f"suite {suite_name}: expectation {name} with {kwargs}: invalid arguments ({exc})") from None

    with _locked(gx_root):
        context = gx.get_context(mode="file", project_root_dir=str(gx_root.parent))  # GX adds the gx/ folder
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        datasource = context.data_sources.add_or_update_pandas("batchml")
        try:
            asset = datasource.get_asset(suite_name)
        except LookupError:
            asset = datasource.add_dataframe_asset(suite_name)
        try:
            batch = asset.get_batch_definition("whole")
        except (KeyError, LookupError):
            batch = asset.add_batch_definition_whole_dataframe("whole")
        suite = gx.ExpectationSuite(name=suite_name, expectations=gx_objects)
        suite = context.suites.add_or_update(suite)
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
        )
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=suite_name,
                validation_definitions=[definition],
                actions=[UpdateDataDocsAction(name="update_data_docs")],
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": df}, run_id=gx.core.run_identifier.RunIdentifier(run_name=label))
        (identifier, validation), = result.run_results.items()
        urls = context.get_docs_sites_urls(resource_identifier=identifier)
    docs = urls[0]["site_url"] if urls else None
    failures = [_failure(r) for r in validation.results if not r.success]
    report = ValidationReport(suite_name, bool(validation.success), len(validation.results), len(df), failures, docs)
    log.info("%s; Data Docs: %s", report.summary(), docs)
    return report


def raise_for_failures(report: ValidationReport, what_next: str) -> None:
    """Fail loudly: one line per failed expectation with what was observed and a sample of offending values."""
    if report.success:
        return
    lines = [f"Great Expectations: {report.summary()}. Nothing was published."]
    for f in report.failures:
        column = f" on {f['column']}" if f.get("column") else ""
        args = ", ".join(f"{k}={v!r}" for k, v in f["kwargs"].items())
        seen = []
        if "unexpected_count" in f:
            seen.append(f"{f['unexpected_count']} unexpected ({f.get('unexpected_percent', 0):.2f}%)")
        if f.get("partial_unexpected_list"):
            seen.append(f"sample: {f['partial_unexpected_list'][:5]}")
        if "observed_value" in f:
            seen.append(f"observed: {str(f['observed_value'])[:200]}")
        if "error" in f:
            seen.append(f"error: {f['error']}")
        args = f" ({args})" if args else ""
        lines.append(f"  - {f['expectation']}{column}{args}: {'; '.join(seen) or 'failed'}")
    if report.data_docs:
        lines.append(f"Data Docs: {report.data_docs}")
    lines.append(what_next)
    raise DataValidationError("\n".join(lines), failures=report.failures, data_docs=report.data_docs)


# Raw partitions for a feature run --------------------------------------------------------------------------------


def required_partitions(spec: UseCaseSpec, as_of: dt.date) -> dict[str, list[dt.date]]:
    """Landing partitions that must exist for the feature job as of `as_of`.

    Events sources: every day of their longest window. Entity and leaving-event sources: the newest day (older
    days were checked by earlier runs). The newest day, `as_of - 1`, is the one validated in depth.
    """
    from batchml.features import source_days

    newest = as_of - dt.timedelta(days=1)
    needed = {name: [newest] for name in _sources_read(spec) if spec.sources[name].kind != "snapshot"}
    for source, days in source_days(spec, as_of).items():
        needed[source] = days
    return needed


def _snapshot_days(spec: UseCaseSpec, landing, as_of: dt.date) -> dict[str, list[dt.date]]:
    """A snapshot source needs its newest partition before `as_of`, whatever its date (tables land when they change)."""
    from batchml.features import newest_snapshot

    return {name: [newest_snapshot(spec, name, landing.landed_days(name, before=as_of), as_of, landing.url)]
            for name in _sources_read(spec) if spec.sources[name].kind == "snapshot"}


def _sources_read(spec: UseCaseSpec) -> list[str]:
    names = [spec.entity.source]
    if spec.entity.leaves_on:
        names.append(spec.entity.leaves_on)
    names += [a.source for a in spec.features.aggregates]
    return list(dict.fromkeys(names))


def check_partitions_landed(spec: UseCaseSpec, landing, as_of: dt.date) -> dict[str, list[dt.date]]:
    """Raise LandingError listing every required partition that has not landed."""
    needed = required_partitions(spec, as_of)
    missing = {s: landing.missing_partitions(s, days) for s, days in needed.items()}
    needed.update(_snapshot_days(spec, landing, as_of))
    missing = {s: days for s, days in missing.items() if days}
    if missing:
        detail = "; ".join(
            f"{s}: {len(days)} missing ({', '.join(d.isoformat() for d in days[:5])}{', ...' if len(days) > 5 else ''})"
            for s, days in missing.items()
        )
        raise LandingError(
            f"Raw partitions needed for features as of {as_of} have not landed under {landing.url}: {detail}. "
            "Land them (or backfill the ingestion), then clear this task."
        )
    return needed


def validate_raw(spec: UseCaseSpec, raw_root: Path, as_of: dt.date, gx_root: Path, run_label: str) -> list[ValidationReport]:
    """Validate the newest partition (as_of - 1) of every source the feature job reads; raise on any failure."""
    from batchml.features import snapshot_day
    from batchml.storage import read_partition

    newest = as_of - dt.timedelta(days=1)
    reports = []
    for source in _sources_read(spec):
        day = snapshot_day(raw_root, spec, as_of) if spec.sources[source].kind == "snapshot" else newest
        table = read_partition(raw_root, source, day)
        if table is None:
            raise LandingError(f"{raw_root / source}: partition dt={day} holds no Parquet file")
        report = run_suite(table.to_pandas(), f"{spec.name}.raw.{source}", raw_suite(spec, source), gx_root, run_label)
        wrong_types = schema_failures(table.schema, spec.sources[source].columns)
        if wrong_types:
            report.failures += wrong_types
            report.success = False
        reports.append(report)
    for report in reports:
        raise_for_failures(
            report,
            "Fix or re-land the offending partition, then clear this task; the feature partition was not rebuilt.",
        )
    return reports


def active_population_size(spec: UseCaseSpec, raw_root: Path, as_of: dt.date) -> int:
    """Entities that started before `as_of` and had not left before it, counted independently of Spark."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from batchml.features import _landed_days, as_of_timestamp

    end = as_of_timestamp(as_of)
    key = spec.entity.key
    if spec.is_snapshot:
        from batchml.features import snapshot_day
        from batchml.storage import read_partition

        table = read_partition(raw_root, spec.entity.source, snapshot_day(raw_root, spec, as_of), columns=[key])
        return len(pc.unique(table[key]))

    def keys(source: str, ts_col: str) -> set:
        days = _landed_days(raw_root, source, as_of)
        if not days:
            return set()
        files = [str(p) for d in days for p in (raw_root / source / f"dt={d.isoformat()}").glob("*.parquet")]
        table = ds.dataset(files, format="parquet").to_table(columns=[key, ts_col], filter=ds.field(ts_col) < end)
        return set(pc.unique(table[key]).to_pylist())

    present = keys(spec.entity.source, spec.entity_source.timestamp)
    if spec.entity.leaves_on:
        present -= keys(spec.entity.leaves_on, spec.sources[spec.entity.leaves_on].timestamp)
    if not present:
        raise LandingError(f"No {spec.entity.source} started before {as_of}: nothing to build features for.")
    return len(present)


# Tables in the warehouse (scores) --------------------------------------------------------------------------------


def score_suite(key: str, columns: list[str], rows: int, roles: list[str], versions: list[int],
                bands: list[str], as_of: dt.date) -> list[Expectation]:
    """One row per entity and model role, no nulls, scores in [0, 1], the pinned versions only.

    The date itself is enforced by the staging table's CHECK constraint (GX stores value sets as JSON text, which
    PostgreSQL will not compare with a DATE column).
    """
    out: list[Expectation] = [
        ("expect_table_columns_to_match_set", {"column_set": columns, "exact_match": True}),
        ("expect_table_row_count_to_equal", {"value": rows}),
        ("expect_compound_columns_to_be_unique", {"column_list": ["model_role", key]}),
    ]
    for col in (key, "as_of_date", "model_role", "score", "risk_decile", "risk_band", "model_name", "model_version",
                "reasons_exact", "scored_at"):
        out.append(("expect_column_values_to_not_be_null", {"column": col}))
    out += [
        ("expect_column_values_to_be_between", {"column": "score", "min_value": 0.0, "max_value": 1.0}),
        ("expect_column_values_to_be_between", {"column": "risk_decile", "min_value": 1, "max_value": 10}),
        ("expect_column_values_to_be_in_set", {"column": "risk_band", "value_set": [*bands, "low"]}),
        ("expect_column_values_to_be_in_set", {"column": "model_role", "value_set": roles}),
        ("expect_column_values_to_be_in_set", {"column": "model_version", "value_set": versions}),
    ]
    return out


def run_sql_suite(warehouse_url: str, table: str, suite_name: str, expectations: list[Expectation], gx_root: Path,
                  label: str) -> ValidationReport:
    """Validate a warehouse table in place (the queries run in the database: memory stays flat)."""
    import sqlalchemy as sa

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # GX stores datasource configs on disk: keep the URL (and any password in it) out of them
    os.environ["BATCHML_GX_WAREHOUSE_URL"] = warehouse_url
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    gx_objects = [_gx_class(name)(**kwargs) for name, kwargs in expectations]
    with _locked(gx_root):
        context = gx.get_context(mode="file", project_root_dir=str(gx_root.parent))
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        datasource = context.data_sources.add_or_update_sql(
            "batchml_warehouse", connection_string="${BATCHML_GX_WAREHOUSE_URL}"
        )
        try:
            datasource.delete_asset(table)
        except LookupError:
            pass
        asset = datasource.add_table_asset(name=table, table_name=table)
        batch = asset.add_batch_definition_whole_table("whole")
        suite = context.suites.add_or_update(gx.ExpectationSuite(name=suite_name, expectations=gx_objects))
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
        )
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(name=suite_name, validation_definitions=[definition],
                          actions=[UpdateDataDocsAction(name="update_data_docs")],
                          result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5})
        )
        result = checkpoint.run(run_id=gx.core.run_identifier.RunIdentifier(run_name=label))
        (identifier, validation), = result.run_results.items()
        urls = context.get_docs_sites_urls(resource_identifier=identifier)
        # they point at a staging table that is about to go: remove them, checkpoint first (it refers to the rest)
        context.checkpoints.delete(suite_name)
        context.validation_definitions.delete(suite_name)
        datasource.delete_asset(table)
    rows = _count_rows(warehouse_url, table, sa)
    failures = [_failure(r) for r in validation.results if not r.success]
    report = ValidationReport(suite_name, bool(validation.success), len(validation.results), rows, failures,
                              urls[0]["site_url"] if urls else None)
    log.info("%s; Data Docs: %s", report.summary(), report.data_docs)
    return report


def _count_rows(url: str, table: str, sa) -> int:
    from batchml.warehouse import check_identifier

    check_identifier(table)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar())
    finally:
        engine.dispose()
