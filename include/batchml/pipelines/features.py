"""The feature DAG of a use case (`<name>__features`): raw partitions landed -> raw checks -> Spark feature job ->
feature checks -> publish. Each task calls one package function and passes its typed result on."""

from __future__ import annotations

from batchml.pipelines.common import asset, run_date, run_label, spark_for, step, wait_for_input
from batchml.results import CheckedFeatures, LandedRaw, PublishedFeatures, RawChecked, StagedFeatures
from batchml.settings import Settings
from batchml.specs import UseCaseSpec

_DOC = """
For the run's date **D** (logical date, or the `as_of` param):

0. `wait_for_input` (scheduled runs only): waits, without holding a worker slot, until D's raw partitions have
   landed; fails naming what is missing after {timeout} h.
1. `check_raw_landed`: every raw partition the job reads has landed (S3 landing zones are mirrored locally).
2. `validate_raw`: Great Expectations on every raw partition the job reads that has not passed with the same content
   before (the day that just landed, usually); a failure names the source, the partition, the file and the values.
3. `build_features`: PySpark, point in time: only data strictly before D 00:00 UTC counts (an event entity: each
   event of D-1 from strictly earlier events only).
4. `validate_features`: one row per active entity (an event entity: per event of the day before D), no nulls,
   ranges.
5. `publish_features`: one atomic rename into `features/<use case>/dt=D/`, then an asset event.

A failed check fails the task with the failed expectations listed and a Data Docs link; nothing is published.
Run one date locally: `airflow dags test {dag_id} 2026-06-01`.
"""


def build_dag(spec: UseCaseSpec, settings: Settings):
    from airflow.sdk import dag, get_current_context, task

    from batchml.pipelines.common import as_of_params, dag_args

    features_asset = asset(spec, "features")

    @dag(**dag_args(spec, "features", _DOC.format(dag_id=spec.dag_id("features"), timeout=spec.wait.timeout_hours),
                    spec.features.schedule,
                    max_active_runs=4, params=as_of_params()))
    def features_dag():
        @task
        @step
        def check_raw_landed() -> LandedRaw:
            from batchml.partitions import landed_raw

            return landed_raw(spec, settings, run_date(get_current_context()))

        @task
        @step
        def validate_raw(landed: LandedRaw) -> RawChecked:
            from batchml.validation import validate_raw_partitions

            return validate_raw_partitions(spec, settings, landed, run_label(get_current_context()))

        @task
        @step
        def build_features(checked: RawChecked) -> StagedFeatures:
            from batchml.features import build_feature_partition

            context = get_current_context()
            with spark_for(settings, context) as spark:
                return build_feature_partition(spark, spec, settings, checked, run_label(context))

        @task
        @step
        def validate_features(staged: StagedFeatures) -> CheckedFeatures:
            from batchml.validation import validate_feature_partition

            return validate_feature_partition(spec, settings, staged, run_label(get_current_context()))

        @task(outlets=[features_asset])
        @step
        def publish_features(checked: CheckedFeatures) -> PublishedFeatures:
            from batchml.features import publish_feature_partition

            context = get_current_context()
            published = publish_feature_partition(spec, settings, checked, str(context["run_id"]))
            context["outlet_events"][features_asset].extra = published.to_xcom()
            return published

        landed = check_raw_landed()
        wait_for_input(spec, settings, "features") >> landed
        publish_features(validate_features(build_features(validate_raw(landed))))

    return features_dag()


def dags() -> dict[str, object]:
    """One feature DAG per spec, keyed by DAG id (for a DAG file's `globals()`)."""
    from batchml.pipelines.common import load_all

    settings, specs = load_all()
    return {spec.dag_id("features"): build_dag(spec, settings) for spec in specs}
