"""The scoring DAG of a use case (`<name>__scoring`), for date D:

  pin_models -> score_features -> load_staging -> validate_scores -> publish_scores

The champion (and challenger) versions are resolved once, by the first task, and every later task uses those
version numbers: a promotion during the run cannot mix versions. Scores are written aside (a staged Parquet file,
then a staging table), validated in the warehouse, and published for D in one transaction; a failure anywhere
leaves D's previous rows as they were.
"""

from __future__ import annotations

from batchml.pipelines.common import asset, run_date, run_label, step, wait_for_input
from batchml.results import CheckedScores, LoadedScores, PinnedVersions, PublishedScores, StagedScores
from batchml.settings import Settings
from batchml.specs import UseCaseSpec

_DOC = """
For the run's date **D** (logical date, or the `as_of` param), after D's feature partition is published:

0. `wait_for_input` (scheduled runs only): waits until D's feature partition is published (up to {timeout} h).
1. `pin_models`: the `champion` alias (and the `challenger`, for shadow scores) resolved once to versions.
2. `score_features`: every entity of D's feature partition, {chunk:,} rows at a time; score, risk decile and band,
   top {top} reason codes (exact TreeSHAP for the top {share:.0%}, {others} for the rest).
3. `load_staging`: bulk load into a staging table (COPY on PostgreSQL).
4. `validate_scores`: Great Expectations in the warehouse (one row per entity and role, no nulls, scores in [0, 1]).
5. `publish_scores`: D's rows of `{table}` replaced in one transaction.

Analysts read the views `{table}_champion` and `{table}_latest`.
"""


def build_dag(spec: UseCaseSpec, settings: Settings):
    from airflow.sdk import dag, get_current_context, task

    from batchml.pipelines.common import as_of_params, assets_or_cron, dag_args

    sc = spec.scoring
    scores_asset = asset(spec, "scores")
    doc = _DOC.format(timeout=spec.wait.timeout_hours, chunk=sc.chunk_rows, top=sc.reason_codes.top, share=sc.reason_codes.exact_share,
                      others=sc.reason_codes.others, table=spec.score_table)
    # whenever the use case's feature partition is published, and on its own schedule if it has one
    schedule = assets_or_cron(asset(spec, "features"), sc.schedule)

    @dag(**dag_args(spec, "scoring", doc, schedule, max_active_runs=2, params=as_of_params()))
    def scoring_dag():
        @task
        @step
        def pin_models() -> PinnedVersions:
            from batchml.scoring import pin_models as pin

            return pin(spec, settings)

        @task
        @step
        def score_features(pinned: PinnedVersions) -> StagedScores:
            from batchml.scoring import score_features as score

            context = get_current_context()
            return score(spec, settings, run_date(context), pinned, str(context["run_id"]), run_label(context))

        @task
        @step
        def load_staging(staged: StagedScores) -> LoadedScores:
            from batchml.score_table import load_staging as load

            return load(spec, settings, staged, run_label(get_current_context()))

        @task
        @step
        def validate_scores(loaded: LoadedScores) -> CheckedScores:
            from batchml.validation import validate_scores as validate

            return validate(spec, settings, loaded, run_label(get_current_context()))

        @task(outlets=[scores_asset])
        @step
        def publish_scores(checked: CheckedScores) -> PublishedScores:
            from batchml.score_table import publish_scores as publish

            result = publish(spec, settings, checked)
            get_current_context()["outlet_events"][scores_asset].extra = result.model_dump(
                mode="json", include={"table", "as_of", "rows"})
            return result

        pinned = pin_models()
        wait_for_input(spec, settings, "scoring") >> pinned
        publish_scores(validate_scores(load_staging(score_features(pinned))))

    return scoring_dag()


def dags() -> dict[str, object]:
    from batchml.pipelines.common import load_all

    settings, specs = load_all()
    return {spec.dag_id("scoring"): build_dag(spec, settings) for spec in specs}
