"""Great Expectations suites derived from the spec: plain lists of (expectation name, kwargs), built without
importing GX (its import costs seconds), so they can be inspected and unit-tested cheaply.
"""

from __future__ import annotations

import datetime as dt

from batchml.specs import AS_OF_COLUMN, ColumnSpec, ExpectationSpec, UseCaseSpec

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


def column_expectations(name: str, col: ColumnSpec, max_length: int | None = None) -> list[Expectation]:
    """Expectations implied by one declared column (and, for a string, its longest allowed value)."""
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
    if max_length is not None:
        out.append(("expect_column_value_lengths_to_be_between", {"column": name, "max_value": max_length}))
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
        out += column_expectations(name, col, spec.max_length(source, name))
    return out + _extra(spec.expectations.raw.get(source, []))


def event_time_failures(table, spec: UseCaseSpec, source: str, day: dt.date) -> list[dict]:
    """Events of partition `day` whose timestamp lies outside `[day - lateness, day + 1 day)` (an events source is
    partitioned by event time: an event elsewhere is from the future, or landed in the wrong partition)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    src = spec.sources[source]
    if src.kind != "events" or src.timestamp not in table.column_names or table.num_rows == 0:
        return []
    ts = table.column(src.timestamp)
    if not pa.types.is_timestamp(ts.type):
        return []  # the type check reports it
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) - dt.timedelta(hours=src.lateness_hours)
    end = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
    ts = pc.cast(ts, pa.timestamp("us", tz="UTC"))
    outside = pc.or_(pc.less(ts, pa.scalar(start, ts.type)), pc.greater_equal(ts, pa.scalar(end, ts.type)))
    bad = pc.filter(ts, pc.fill_null(outside, False))
    if len(bad) == 0:
        return []
    return [{"expectation": "event_time_within_partition", "column": src.timestamp,
             "kwargs": {"min_value": start.isoformat(), "max_value": f"< {end.isoformat()}",
                        "lateness_hours": src.lateness_hours},
             "unexpected_count": len(bad), "unexpected_percent": 100.0 * len(bad) / table.num_rows,
             "partial_unexpected_list": [v.isoformat() for v in bad.slice(0, 5).to_pylist()]}]


def feature_suite(spec: UseCaseSpec, as_of: dt.date, expected_rows: int) -> list[Expectation]:
    """One row per active entity (an event entity: per event of the day before `as_of`, with its timestamp), the
    declared columns, no nulls, values in their natural ranges."""
    key = spec.entity.key
    features = spec.feature_columns()
    stamp = [spec.event_timestamp] if spec.is_event else []
    columns = [key, AS_OF_COLUMN, *stamp, *features]
    out: list[Expectation] = [
        ("expect_table_columns_to_match_set", {"column_set": columns, "exact_match": True}),
        ("expect_table_row_count_to_equal", {"value": expected_rows}),
        ("expect_column_values_to_not_be_null", {"column": key}),
        ("expect_column_values_to_be_unique", {"column": key}),
        # validated as ISO text: GX stores value sets as JSON
        ("expect_column_values_to_be_in_set", {"column": AS_OF_COLUMN, "value_set": [as_of.isoformat()]}),
    ]
    out += [("expect_column_values_to_not_be_null", {"column": c}) for c in stamp]
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
            col = entity_cols.get(name)  # None: a generated feature (a z-score, the hour of day)
            if col is not None and (col.min is not None or col.max is not None):
                out.append(("expect_column_values_to_be_between",
                            {"column": name, "min_value": col.min, "max_value": col.max, "mostly": col.mostly}))
        else:
            out.append(("expect_column_values_to_be_between", {"column": name, "min_value": 0}))
    return out + _extra(spec.expectations.features)




def score_suite(key: str, columns: list[str], rows: int, roles: list[str], versions: list[int],
                bands: list[str], as_of: dt.date, key_enforced: bool = False) -> list[Expectation]:
    """One row per entity and model role, no nulls, scores in [0, 1], the pinned versions only. `key_enforced`: the
    warehouse proves (model_role, key) unique itself (PostgreSQL: warehouse.add_primary_key), so no GX query does.

    The date itself is enforced by the staging table's CHECK constraint (GX stores value sets as JSON text, which
    PostgreSQL will not compare with a DATE column).
    """
    out: list[Expectation] = [
        ("expect_table_columns_to_match_set", {"column_set": columns, "exact_match": True}),
        ("expect_table_row_count_to_equal", {"value": rows}),
    ]
    if not key_enforced:
        out.append(("expect_compound_columns_to_be_unique", {"column_list": ["model_role", key]}))
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
