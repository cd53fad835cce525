"""The feature DAG of a use case (`<name>__features`): raw checks -> Spark feature job -> feature checks -> publish.

The steps are plain functions of (spec, settings, as_of, ...) returning small JSON-able references (paths, counts),
so they run and are tested without a scheduler; `build_dag` only wires them into Airflow tasks.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from batchml.settings import Settings
from batchml.specs import UseCaseSpec
from batchml.storage import Landing, feature_partition_dir

log = logging.getLogger(__name__)


def features_asset(spec: UseCaseSpec):
    """The Airflow asset a published feature partition updates; each event's extra carries the date and path.

    Identified by name alone: the same asset whatever the data root of an environment (a path URI would differ
    between environments), and no URI scheme that makes Airflow load every provider while parsing.
    """
    from airflow.sdk import Asset

    return Asset(name=f"{spec.name}.features")


def _staging_dir(spec: UseCaseSpec, settings: Settings, as_of: dt.date) -> Path:
    """Where runs for `as_of` write before publishing (one subfolder per run)."""
    from batchml.storage import partition_name

    return settings.staging_root / "features" / spec.name / partition_name(as_of)


# Steps -----------------------------------------------------------------------------------------------------------


def check_landed(spec: UseCaseSpec, settings: Settings, as_of: dt.date) -> dict:
    """Every raw partition the job needs has landed; an S3 landing zone is mirrored locally. Returns raw_root."""
    from batchml.validation import check_partitions_landed

    landing = Landing(settings.landing_url)
    needed = check_partitions_landed(spec, landing, as_of)
    if landing.is_s3 and not spec.is_snapshot:
        # the entity source and the leaving events are read over their whole history before as_of
        for source in (spec.entity.source, spec.entity.leaves_on):
            if source:
                needed[source] = landing.landed_days(source, before=as_of)
    raw_root = landing.local_view(needed, settings.staging_root / "landing_mirror")
    log.info("Raw partitions for %s as of %s are in %s", spec.name, as_of, raw_root)
    return {"raw_root": str(raw_root), "as_of": as_of.isoformat()}


def validate_raw(spec: UseCaseSpec, settings: Settings, ref: dict, label: str) -> dict:
    """Great Expectations on the newest raw partition of each source; raises listing every failure."""
    from batchml.validation import validate_raw as run

    reports = run(spec, Path(ref["raw_root"]), dt.date.fromisoformat(ref["as_of"]), settings.gx_root, label)
    return {**ref, "raw_checks": {r.suite: r.rows for r in reports}, "data_docs": reports[-1].data_docs}


def build(spark, spec: UseCaseSpec, settings: Settings, ref: dict, label: str) -> dict:
    """Run the Spark feature job into a staging folder (nothing is published here)."""
    from batchml.features import run_feature_job

    as_of = dt.date.fromisoformat(ref["as_of"])
    spark.sparkContext.setLogLevel("WARN")
    result = run_feature_job(spark, spec, Path(ref["raw_root"]), as_of, _staging_dir(spec, settings, as_of) / label)
    return {**ref, "staged_file": result.staged_file, "rows": result.rows, "job_seconds": round(result.seconds, 1)}


def validate_features(spec: UseCaseSpec, settings: Settings, ref: dict, label: str) -> dict:
    """Great Expectations on the staged feature table: one row per active entity, no nulls, sane ranges."""
    import pandas as pd

    from batchml.features import AS_OF_COLUMN
    from batchml.validation import active_population_size, feature_suite, raise_for_failures, run_suite

    as_of = dt.date.fromisoformat(ref["as_of"])
    expected = active_population_size(spec, Path(ref["raw_root"]), as_of)
    df = pd.read_parquet(ref["staged_file"])
    df[AS_OF_COLUMN] = df[AS_OF_COLUMN].astype(str)
    report = run_suite(df, f"{spec.name}.features", feature_suite(spec, as_of, expected), settings.gx_root, label)
    raise_for_failures(report, "The feature partition was not published; the previous one (if any) is intact.")
    return {**ref, "expected_rows": expected, "data_docs": report.data_docs}


def publish(spec: UseCaseSpec, settings: Settings, ref: dict, run_id: str) -> dict:
    """Move the validated file into `features/<name>/dt=D/` in one rename; returns the published path."""
    from batchml.storage import publish_file, remove_tree

    as_of = dt.date.fromisoformat(ref["as_of"])
    target_dir = feature_partition_dir(settings.features_root, spec.name, as_of)
    staged = Path(ref["staged_file"])
    manifest = {
        "use_case": spec.name,
        "as_of": ref["as_of"],
        "rows": ref["rows"],
        "run_id": run_id,
        "spec_sha256": spec.sha256,
        "data_docs": ref.get("data_docs"),
        "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    path = publish_file(staged, target_dir, manifest)
    remove_tree(_staging_dir(spec, settings, as_of))  # this run's and earlier failed runs' staging folders
    log.info("Published %s (%d rows)", path, ref["rows"])
    return {"path": str(path), "rows": ref["rows"], "as_of": ref["as_of"], "data_docs": ref.get("data_docs")}


# Wiring ----------------------------------------------------------------------------------------------------------

_DOC = """
For the run's date **D** (logical date, or the `as_of` param):

1. `check_landed`: every raw partition the job reads has landed (S3 landing zones are mirrored locally).
2. `validate_raw`: Great Expectations on the newest partition of each source (D-1; a snapshot source: its newest
   snapshot landed before D).
3. `build_features`: PySpark, point in time: only data strictly before D 00:00 UTC counts.
4. `validate_features`: one row per active entity, no nulls, ranges.
5. `publish_features`: one atomic rename into `features/<use case>/dt=D/`, then an asset event.

A failed check fails the task with the failed expectations listed and a Data Docs link; nothing is published.
Run one date locally: `airflow dags test {dag_id} 2026-06-01`.
"""


def build_dag(spec: UseCaseSpec, settings: Settings):
    from airflow.sdk import dag, get_current_context, task

    from batchml.pipelines.common import as_of_params, dag_args, fail_fast, resolve_as_of, run_label

    asset = features_asset(spec)
    doc = _DOC.format(dag_id=spec.dag_id("features"))

    @dag(**dag_args(spec, "features", doc, spec.features.schedule, max_active_runs=4, params=as_of_params()))
    def features_dag():
        @task
        @fail_fast
        def check_raw_landed() -> dict:
            return check_landed(spec, settings, resolve_as_of(get_current_context()))

        @task(task_id="validate_raw")
        @fail_fast
        def validate_raw_task(ref: dict) -> dict:
            return validate_raw(spec, settings, ref, run_label(get_current_context()))

        @task.pyspark(conn_id=settings.spark_conn_id)
        @fail_fast
        def build_features(ref: dict, spark=None) -> dict:
            return build(spark, spec, settings, ref, run_label(get_current_context()))

        @task(task_id="validate_features")
        @fail_fast
        def validate_features_task(ref: dict) -> dict:
            return validate_features(spec, settings, ref, run_label(get_current_context()))

        @task(outlets=[asset])
        @fail_fast
        def publish_features(ref: dict) -> dict:
            context = get_current_context()
            published = publish(spec, settings, ref, str(context["run_id"]))
            context["outlet_events"][asset].extra = published
            return published

        publish_features(validate_features_task(build_features(validate_raw_task(check_raw_landed()))))

    return features_dag()


def dags() -> dict[str, object]:
    """One feature DAG per spec, keyed by DAG id (for a DAG file's `globals()`)."""
    from batchml.pipelines.common import load_all

    settings, specs = load_all()
    return {spec.dag_id("features"): build_dag(spec, settings) for spec in specs}
