"""The scoring DAG of a use case (`<name>__scoring`), for date D:

  pin_models -> score_features -> load_staging -> validate_scores -> publish_scores

The champion (and challenger) versions are resolved once, by the first task, and every later task uses those
version numbers: a promotion during the run cannot mix versions. Scores are written aside (a staged Parquet file,
then a staging table), validated in the warehouse, and published for D in one transaction; a failure anywhere
leaves D's previous rows as they were.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

from batchml.settings import Settings
from batchml.specs import UseCaseSpec

log = logging.getLogger(__name__)


def _staging_dir(spec: UseCaseSpec, settings: Settings, as_of: dt.date) -> Path:
    from batchml.storage import partition_name

    return settings.staging_root / "scores" / spec.name / partition_name(as_of)


# Steps -----------------------------------------------------------------------------------------------------------


def pin_models(spec: UseCaseSpec, settings: Settings) -> dict:
    """Resolve the champion (required) and the challenger (optional) aliases to version numbers, once."""
    from batchml import registry

    client = registry.connect(settings)
    champion = registry.resolve_champion(client, spec.model_name)
    challenger = registry.alias_version(client, spec.model_name, registry.CHALLENGER)
    if challenger == champion or not spec.scoring.shadow_challenger:
        challenger = None
    log.info("Pinned %s: champion v%s, challenger %s", spec.model_name, champion,
             f"v{challenger}" if challenger else "none")
    return {"model_name": spec.model_name, "champion": champion, "challenger": challenger}


def score_features(spec: UseCaseSpec, settings: Settings, as_of: dt.date, pinned: dict, run_id: str,
                   label: str) -> dict:
    """Score D's feature partition with the pinned versions into a staged Parquet file."""
    from batchml import registry
    from batchml.scoring import PinnedModel, score_partition
    from batchml.storage import feature_partition_file

    registry.connect(settings)
    started = time.perf_counter()
    name = pinned["model_name"]
    models = [PinnedModel(role, name, pinned[role], registry.load_batch_model(f"models:/{name}/{pinned[role]}"))
              for role in ("champion", "challenger") if pinned.get(role)]
    load_seconds = time.perf_counter() - started
    folder = _staging_dir(spec, settings, as_of) / label
    folder.mkdir(parents=True, exist_ok=True)
    run = score_partition(spec, feature_partition_file(settings.features_root, spec.name, as_of), models,
                          folder / "scores.parquet", as_of, run_id)
    return {**pinned, "as_of": as_of.isoformat(), "staged_file": run.staged_file, "entities": run.rows_in,
            "rows": run.rows_out, "exact_reason_rows": run.exact_rows,
            "seconds": {"load_models": round(load_seconds, 2), **run.seconds}}


def load_staging(spec: UseCaseSpec, settings: Settings, ref: dict, label: str) -> dict:
    """Create the score table if needed (versioned DDL), then bulk-load the staged file into a staging table."""
    import pyarrow.parquet as pq

    from batchml import warehouse as wh

    as_of = dt.date.fromisoformat(ref["as_of"])
    table = spec.score_table
    engine = wh.create_engine(settings.warehouse_url)
    wh.ping(engine)
    from batchml.scoring import score_table_columns

    columns = score_table_columns(spec)
    wh.ensure_score_table(engine, table, columns)
    wh.drop_stale_staging(engine, table, as_of)
    staging = wh.staging_table_name(table, as_of, label)
    wh.create_staging_table(engine, staging, columns, as_of)
    started = time.perf_counter()
    try:
        file = pq.ParquetFile(ref["staged_file"])
        rows = wh.bulk_load(engine, staging, file.iter_batches(batch_size=spec.scoring.chunk_rows), file.schema_arrow)
    except Exception:
        wh.drop_table(engine, staging)
        raise
    seconds = round(time.perf_counter() - started, 2)
    log.info("Loaded %d rows into %s in %.1f s", rows, staging, seconds)
    return {**ref, "staging_table": staging, "seconds": {**ref["seconds"], "load": seconds}}


def validate_scores(spec: UseCaseSpec, settings: Settings, ref: dict, label: str) -> dict:
    """Great Expectations on the staging table, in the warehouse; a failure drops it and lists what failed."""
    from batchml import warehouse as wh
    from batchml.scoring import score_table_columns
    from batchml.validation import raise_for_failures, run_sql_suite, score_suite

    started = time.perf_counter()
    roles = ["champion"] + (["challenger"] if ref.get("challenger") else [])
    versions = [ref["champion"]] + ([ref["challenger"]] if ref.get("challenger") else [])
    columns = [c.name for c in score_table_columns(spec)]
    suite = score_suite(spec.entity.key, columns, ref["entities"] * len(roles), roles, versions,
                        list(spec.scoring.bands), dt.date.fromisoformat(ref["as_of"]))
    report = run_sql_suite(settings.warehouse_url, ref["staging_table"], f"{spec.name}.scores", suite,
                           settings.gx_root, label)
    if not report.success:
        wh.drop_table(wh.create_engine(settings.warehouse_url), ref["staging_table"])
    raise_for_failures(report, f"Scores for {ref['as_of']} were not published; the previous rows are intact.")
    return {**ref, "data_docs": report.data_docs,
            "seconds": {**ref["seconds"], "validate": round(time.perf_counter() - started, 2)}}


def publish_scores(spec: UseCaseSpec, settings: Settings, ref: dict) -> dict:
    """Swap the staging table in as D's rows (one transaction), export to S3 if configured, clean up."""
    from batchml import warehouse as wh
    from batchml.storage import remove_tree

    as_of = dt.date.fromisoformat(ref["as_of"])
    started = time.perf_counter()
    engine = wh.create_engine(settings.warehouse_url)
    wh.publish_partition(engine, spec.score_table, ref["staging_table"], as_of)
    publish_seconds = round(time.perf_counter() - started, 2)
    exported = None
    if spec.scoring.export_url:
        exported = export_to_s3(spec, Path(ref["staged_file"]), as_of)
    remove_tree(_staging_dir(spec, settings, as_of))
    seconds = {**ref["seconds"], "publish": publish_seconds}
    log.info("Published %d rows of %s for %s (%s); timings %s", ref["rows"], spec.score_table, as_of,
             f"champion v{ref['champion']}" + (f", challenger v{ref['challenger']}" if ref.get("challenger") else ""),
             seconds)
    return {"table": spec.score_table, "as_of": ref["as_of"], "rows": ref["rows"], "entities": ref["entities"],
            "champion": ref["champion"], "challenger": ref.get("challenger"), "exported": exported,
            "data_docs": ref.get("data_docs"), "seconds": seconds}


def export_to_s3(spec: UseCaseSpec, staged_file: Path, as_of: dt.date) -> str:
    """Upload D's scores as Parquet to `<export_url>/<table>/dt=D/scores.parquet` (one PUT: replaced on re-run)."""
    from batchml.storage import partition_name, s3_client, split_s3_url

    bucket, prefix = split_s3_url(spec.scoring.export_url)
    key = "/".join(p for p in (prefix, spec.score_table, partition_name(as_of), "scores.parquet") if p)
    s3_client().upload_file(str(staged_file), bucket, key)
    return f"s3://{bucket}/{key}"


# Wiring ----------------------------------------------------------------------------------------------------------

_DOC = """
For the run's date **D** (logical date, or the `as_of` param), after D's feature partition is published:

1. `pin_models`: the `champion` alias (and the `challenger`, for shadow scores) resolved once to versions.
2. `score_features`: every entity of D's feature partition, {chunk:,} rows at a time; score, risk decile and band,
   top {top} reason codes (exact TreeSHAP for the top {share:.0%}, {others} for the rest).
3. `load_staging`: bulk load into a staging table (COPY on PostgreSQL).
4. `validate_scores`: Great Expectations in the warehouse (one row per entity and role, no nulls, scores in [0, 1]).
5. `publish_scores`: D's rows of `{table}` replaced in one transaction.

Analysts read the views `{table}_champion` and `{table}_latest`.
"""


def build_dag(spec: UseCaseSpec, settings: Settings):
    from airflow.sdk import Asset, dag, get_current_context, task

    from batchml.pipelines.common import as_of_params, assets_or_cron, dag_args, fail_fast, resolve_as_of, run_label
    from batchml.pipelines.features import features_asset

    sc = spec.scoring
    scores_asset = Asset(name=f"{spec.name}.scores")
    doc = _DOC.format(chunk=sc.chunk_rows, top=sc.reason_codes.top, share=sc.reason_codes.exact_share,
                      others=sc.reason_codes.others, table=spec.score_table)
    # whenever the use case's feature partition is published, and on its own schedule if it has one
    schedule = assets_or_cron(features_asset(spec), sc.schedule)

    @dag(**dag_args(spec, "scoring", doc, schedule, max_active_runs=2, params=as_of_params()))
    def scoring_dag():
        @task(task_id="pin_models")
        @fail_fast
        def pin_models_task() -> dict:
            return pin_models(spec, settings)

        @task(task_id="score_features")
        @fail_fast
        def score_features_task(pinned: dict) -> dict:
            context = get_current_context()
            return score_features(spec, settings, _as_of(context), pinned, str(context["run_id"]), run_label(context))

        @task(task_id="load_staging")
        @fail_fast
        def load_staging_task(ref: dict) -> dict:
            return load_staging(spec, settings, ref, run_label(get_current_context()))

        @task(task_id="validate_scores")
        @fail_fast
        def validate_scores_task(ref: dict) -> dict:
            return validate_scores(spec, settings, ref, run_label(get_current_context()))

        @task(task_id="publish_scores", outlets=[scores_asset])
        @fail_fast
        def publish_scores_task(ref: dict) -> dict:
            context = get_current_context()
            result = publish_scores(spec, settings, ref)
            context["outlet_events"][scores_asset].extra = {k: result[k] for k in ("table", "as_of", "rows")}
            return result

        publish_scores_task(validate_scores_task(load_staging_task(score_features_task(pin_models_task()))))

    def _as_of(context) -> dt.date:
        """The date to score: the param, else the date of the triggering feature event, else the logical date."""
        if (context.get("params") or {}).get("as_of"):
            return resolve_as_of(context)
        for events in (context.get("triggering_asset_events") or {}).values():
            for event in events:
                if (event.extra or {}).get("as_of"):
                    return dt.date.fromisoformat(event.extra["as_of"])
        return resolve_as_of(context)

    return scoring_dag()


def dags() -> dict[str, object]:
    from batchml.pipelines.common import load_all

    settings, specs = load_all()
    return {spec.dag_id("scoring"): build_dag(spec, settings) for spec in specs}
