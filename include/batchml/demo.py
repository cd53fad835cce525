"""The demo: generate the churn data set and run the generated DAGs through Airflow (`dag.test`, in one process),
then summarize.

Every DAG run's full log goes to `<home>/logs/dag-runs/`; the terminal shows one progress line per run and, at the
end, what was produced, where, and the key figures. Re-running reuses the data already generated and replaces
each output in place (nothing is duplicated).
"""

from __future__ import annotations

import datetime as dt
import importlib
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from batchml.generate import GeneratorConfig, generate
from batchml.settings import Settings, get_settings
from batchml.specs import get_spec
from batchml.storage import Landing, feature_partition_dir, read_manifest

DEMO_USE_CASE = "churn"
# Eleven months of history: the training window (12 weekly snapshots with purge gaps, 30-day labels) and the
# 90-day feature lookback before its oldest snapshot fit before the demo date.
# From DEMO_DRIFT_START the drift knob shifts activity, amounts, channel mix and adds a category, so that the
# monitoring part of the demo has something to find. It starts on the demo date (whose features read only the days
# before it), so that monitoring sees it five days later, 35 days after the first model's newest snapshot: the
# retraining's weekly snapshots then fall on the same days as five of the first model's, which it reuses.
DEMO_DRIFT_START = dt.date(2026, 7, 1)
DEMO_DATA = GeneratorConfig(customers=10_000, start=dt.date(2025, 10, 1), days=335, seed=7,
                            drift_start=DEMO_DRIFT_START, drift_strength=2.0)
DEMO_FEATURE_DATE = dt.date(2026, 7, 1)
# Days monitored after the drift starts (a few, to keep the demo short); it stops at the first request or
# scheduled retraining.
DEMO_MONITORED_DAYS = [DEMO_DRIFT_START + dt.timedelta(days=d) for d in (5, 7, 9, 12)]
# The demo tunes with a smaller budget than the spec's (scheduled runs use the spec's), to keep it to minutes.
DEMO_TUNING = {"trials": 4, "timeout_seconds": 15}


def say(message: str = "") -> None:
    print(message, flush=True)


@dataclass
class DagRunOutcome:
    dag_id: str
    day: dt.date
    ok: bool
    seconds: float
    log_file: Path


def airflow_bin() -> str:
    found = shutil.which("airflow")
    if found:
        return found
    candidate = Path(sys.executable).with_name("airflow")
    if candidate.exists():
        return str(candidate)
    raise SystemExit("The `airflow` command is not installed in this environment: run ./bin/demo to set it up.")


def start_metadata_db_migration(settings: Settings) -> Callable[[], None]:
    """Start `airflow db migrate` in a subprocess (the demo generates its data meanwhile); returns the function that
    waits for it and stops the demo if it failed."""
    log_dir = settings.home / "logs" / "dag-runs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / "airflow-db-migrate.log"
    with open(log_file, "w") as log:
        migration = subprocess.Popen([airflow_bin(), "db", "migrate"], stdout=log, stderr=subprocess.STDOUT)

    def wait() -> None:
        if migration.wait() != 0:
            raise SystemExit(f"`airflow db migrate` failed; see {log_file}")

    return wait


def preload_libraries() -> None:
    """Import the heavy libraries the DAG runs use (Great Expectations, MLflow, SHAP, the boosters: several seconds
    of imports) and load the reason-code kernels (compiled on a fresh install: about 3 s) in a background thread
    while the metadata DB migrates and the data is generated, rather than on the first DAG runs' path. A failure is
    left to the task that needs the library to report."""

    def load() -> None:
        try:
            for name in ("great_expectations", "mlflow", "shap", "lightgbm", "xgboost"):
                importlib.import_module(name)
            from batchml import treeshap

            treeshap.warm_up()
        except Exception:  # noqa: BLE001 - reported by the task that imports it
            return

    threading.Thread(target=load, name="batchml-preload", daemon=True).start()


def run_dag(settings: Settings, dag_id: str, day: dt.date, conf: dict | None = None) -> DagRunOutcome:
    """One run of a generated DAG for `day`, through Airflow (`dag.test`, in this process: Airflow, Spark, GX and
    MLflow load once for the whole demo); its output in a log file, one progress line on the terminal."""
    from batchml.pipelines.local import run_dag as run_locally
    from batchml.specs import get_spec

    use_case, _, kind = dag_id.partition("__")
    spec = get_spec(settings.specs_dir, use_case)
    log_file = settings.home / "logs" / "dag-runs" / f"{dag_id}_{day.isoformat()}.log"
    print(f"  ▸ {dag_id} for {day} ...", end="", flush=True)
    run = run_locally(spec, settings, kind, day, conf, log_file)
    say(f" {'ok' if run.ok else 'FAILED'} ({run.seconds:.0f} s)")
    if not run.ok:
        say(_failure_excerpt(log_file.read_text(errors="replace")))
        say(f"    full log: {log_file}")
    return DagRunOutcome(dag_id, day, run.ok, run.seconds, log_file)


def _failure_excerpt(text: str, limit: int = 25) -> str:
    """The lines of a dags-test log that say why a task failed."""
    keys = ("AirflowFailException", "Error:", "Exception:", "FAILED", "  - expect", "Data Docs:")
    lines = [ln.strip() for ln in text.splitlines() if any(k in ln for k in keys)]
    return "\n".join(f"    {ln[:240]}" for ln in dict.fromkeys(lines[-limit:]))


def run(use_case: str = DEMO_USE_CASE, as_of: dt.date = DEMO_FEATURE_DATE) -> int:
    started = time.perf_counter()
    settings = get_settings()
    spec = get_spec(settings.specs_dir, use_case)
    landing = Landing(settings.landing_url)

    say(f"batchml demo: use case {spec.name!r}, local state in {settings.home}")
    say("1/4 Airflow metadata DB (SQLite, embedded): migrating in the background ...")
    wait_for_migration = start_metadata_db_migration(settings)
    preload_libraries()

    say(f"2/4 Demo data: {DEMO_DATA.customers:,} customers, {DEMO_DATA.start} to {DEMO_DATA.end} -> {landing.url}")
    gen = generate(DEMO_DATA, landing, progress=lambda m: say(f"    {m}"))
    say(
        "    " + ("already generated with this config, reused" if gen.skipped else f"landed in {gen.seconds:.1f} s")
        + ": " + ", ".join(f"{n:,} {s}" for s, n in gen.rows.items())
    )

    wait_for_migration()
    say(f"3/4 Train and score as of {as_of} (the DAGs, run by Airflow's dag.test; logs in "
        f"{settings.home / 'logs' / 'dag-runs'})")
    for dag_kind, conf in (("features", None), ("training", {"reason": "batchml demo", **DEMO_TUNING}),
                           ("scoring", None), ("monitoring", None)):
        if not run_dag(settings, spec.dag_id(dag_kind), as_of, conf).ok:
            return 1
    trained = _latest_training_result(settings, spec)
    say(f"    {as_of}: {_monitoring_verdict(settings, spec, as_of)}")

    say(f"4/4 Days after the drift that starts on {DEMO_DRIFT_START}: features -> scoring -> monitoring, "
        "until monitoring requests a retrain")
    from batchml.pipelines.monitoring import latest_retrain_request

    request, monitored, schedule = None, [], None
    for day in DEMO_MONITORED_DAYS:
        since = dt.datetime.now(dt.UTC)
        if not _run_day(settings, spec, day):
            return 1
        monitored.append(day)
        request = latest_retrain_request(spec, since)
        say(f"    {day}: {_monitoring_verdict(settings, spec, day)}")
        schedule = _pending_schedule(settings, spec, day)
        if request or schedule:
            break
    if schedule and not request:
        # the drift's outcomes are known only a horizon later: the policy scheduled the retraining for the day its
        # labels mature, and the monitoring run of that day requests it (the days between change nothing here)
        say(f"    the retraining waits for the labels of {schedule.drift_since} to mature: {schedule.training_date}")
        since = dt.datetime.now(dt.UTC)
        if not _run_day(settings, spec, schedule.training_date):
            return 1
        monitored.append(schedule.training_date)
        request = latest_retrain_request(spec, since)
        say(f"    {schedule.training_date}: {_monitoring_verdict(settings, spec, schedule.training_date)}")
    retrained = None
    if request:
        # what the scheduler does on the retrain-request asset event, run here with the event's payload
        conf = {k: request[k] for k in ("training_date", "reason", "trigger", "figures") if k in request}
        conf.update(DEMO_TUNING)
        if not run_dag(settings, spec.dag_id("training"), dt.date.fromisoformat(request["training_date"]), conf).ok:
            return 1
        retrained = _latest_training_result(settings, spec)

    import pyarrow.parquet as pq

    part_dir = feature_partition_dir(settings.features_root, spec.name, as_of)
    manifest = read_manifest(part_dir) or {}
    columns = pq.read_schema(part_dir / "part-0.parquet").names
    model = trained
    say("")
    say(f"Done in {time.perf_counter() - started:.0f} s. Produced:")
    say(f"  feature table   {part_dir / 'part-0.parquet'}")
    say(f"                  {manifest.get('rows', 0):,} customers x {len(columns)} columns as of {as_of}")
    say(f"  raw data        {landing.url} ({sum(gen.rows.values()):,} rows in 4 sources)")
    say(f"  Data Docs       {manifest.get('data_docs') or settings.data_docs_index.as_uri()}")
    say(f"                  (all checks: {settings.data_docs_index.as_uri()})")
    if model:
        say(f"  model           {model['model_name']} v{model['version']}: gate verdict {model['verdict']}; "
            f"test ROC AUC {model['test_roc_auc']:.3f} vs logistic-regression baseline {model['baseline_test_roc_auc']:.3f}")
        say(f"  model card      {Path(model['model_card']).as_uri()}")
    say(f"  MLflow          mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}  (then http://127.0.0.1:5000)")
    last_day = monitored[-1] if monitored else as_of
    report = settings.reports_root / spec.name / "drift" / f"drift_{last_day.isoformat()}.html"
    if request:
        say(f"  drift           seen on {schedule.drift_since if schedule else last_day}; retraining requested on "
            f"{last_day}, when the labels after the drift had matured ({len(monitored)} monitored days)")
        say(f"  drift report    {report.as_uri() if report.exists() else report}")
        if retrained:
            say(f"  retrained       {retrained['model_name']} v{retrained['version']} (trigger drift): gate verdict "
                f"{retrained['verdict']}; test ROC AUC {retrained['test_roc_auc']:.3f}")
            say(f"  model card      {Path(retrained['model_card']).as_uri()}")
    else:
        say(f"  drift           no retrain request over {', '.join(map(str, monitored))} (see the monitoring logs "
            f"and {spec.monitoring_table}; a request within the cool-down of an earlier one is suppressed)")
    sample = _score_sample(settings, spec, as_of)
    if sample is not None:
        say(f"  scores          {spec.score_table} in {settings.warehouse_url}: {sample['rows']:,} rows for {as_of}; "
            "highest risk:")
        say(sample["text"])
    say(f"  DAG run logs    {settings.home / 'logs' / 'dag-runs'}")
    say("Next: `source bin/env.sh && airflow standalone` to browse the DAGs (see README, 'Run it locally').")
    return 0


def _run_day(settings: Settings, spec, day: dt.date) -> bool:
    return all(run_dag(settings, spec.dag_id(kind), day).ok for kind in ("features", "scoring", "monitoring"))


def _pending_schedule(settings: Settings, spec, day: dt.date):
    """The drift-triggered retraining monitoring scheduled up to `day` (waiting for labels), if any."""
    from batchml import warehouse as wh
    from batchml.monitoring_table import pending_schedule

    return pending_schedule(wh.engine(settings.warehouse_url), spec.monitoring_table, day + dt.timedelta(days=1))


def _score_sample(settings: Settings, spec, as_of: dt.date) -> dict | None:
    """The day's row count and its five highest-risk champion rows, read back from the warehouse."""
    import pandas as pd
    import sqlalchemy as sa

    from batchml import warehouse as wh

    key = spec.entity.key
    view = sa.table(f"{spec.score_table}_champion", *[sa.column(c) for c in (
        key, "as_of_date", "score", "risk_band", "reason_1", "reason_1_value", "reason_2", "reason_2_value")])
    on_day = view.c.as_of_date == as_of.isoformat()
    with wh.engine(settings.warehouse_url).connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(view).where(on_day)).scalar()
        top = pd.read_sql(sa.select(*[c for c in view.c if c.name != "as_of_date"]).where(on_day)
                          .order_by(view.c.score.desc()).limit(5), conn)
    top["score"] = top.score.map(lambda v: f"{v:.3f}")
    text = "\n".join("                  " + line for line in top.to_string(index=False).splitlines())
    return {"rows": int(rows), "text": text}


def _monitoring_verdict(settings: Settings, spec, day: dt.date) -> str:
    """What the monitoring run of `day` decided, read back from the monitoring table."""
    from batchml import warehouse as wh
    from batchml.monitoring import retrain_verdict

    verdict = retrain_verdict(wh.engine(settings.warehouse_url), spec.monitoring_table, day)
    if verdict is None:
        return "no monitoring figures"
    return f"{verdict['alerts']} drift alert(s); retraining {verdict['status']} ({verdict['detail'][:200]})"


def _latest_training_result(settings: Settings, spec) -> dict | None:
    """The newest registered version's verdict and figures, read back from MLflow."""
    from batchml import registry

    client = registry.connect(settings)
    versions = client.search_model_versions(f"name='{spec.model_name}'")
    if not versions:
        return None
    latest = max(versions, key=lambda v: int(v.version))
    run = client.get_run(latest.run_id)
    card = settings.reports_root / spec.name / "model_cards" / f"{spec.model_name}_v{latest.version}.html"
    return {"model_name": spec.model_name, "version": int(latest.version),
            "verdict": latest.tags.get("gate.verdict", "?"), "model_card": str(card),
            "test_roc_auc": run.data.metrics.get("test_roc_auc", float("nan")),
            "baseline_test_roc_auc": run.data.metrics.get("baseline_test_roc_auc", float("nan"))}
