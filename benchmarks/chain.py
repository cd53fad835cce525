"""Whole-chain benchmark: generate -> features -> training -> scoring -> publish -> monitoring of the churn use case
at several sizes, each stage beside its single-machine reference, in the same run.

    .venv/bin/python benchmarks/chain.py                          # 10k, 100k and 1M customers (hours: see the docs)
    .venv/bin/python benchmarks/chain.py --quick                  # 10k only, 4 trials: a check that runs end to end
    .venv/bin/python benchmarks/chain.py --sizes 10000,100000 [--skip-evidently] [--trials N]
    .venv/bin/python benchmarks/chain.py --retrain --sizes 1000000  # training again on a full run's snapshots
    .venv/bin/python benchmarks/chain.py --fast-path --sizes 1000000  # the daily path again on a full run's champion

Every stage of every size runs in a fresh subprocess of its own (so that its peak memory and its first-run costs are
its own) and calls the package's step functions as the DAG tasks do, with BATCHML_HOME=.local/bench/chain/<size>
(git-ignored), local Spark `local[2]`, SQLite MLflow and a PostgreSQL warehouse (one throwaway server for the run,
one database per size). Per stage: wall and CPU time (the process and its children), rows per second, peak memory of
the Python driver and of the Spark JVM apart (VmHWM of each process, reset at each step, plus RSS polled every
0.2 s), and across the sizes the log-log slope of time against size. References, each in its own process too:

- features: the DuckDB query of benchmarks/feature_job.py (imported, not copied) on the same Parquet files; the
  tables must be equal to 1e-9. The feature job is reported as a task runs it (a fresh process, a fresh Spark
  session, its first run; session start apart) and warm (a second run in the same session);
- scoring: the champion's raw booster (`model.estimator.predict_proba`) on the transformed rows of the same
  feature partition (read + transform + predict);
- publish: the same score rows by ADBC's binary COPY (`adbc_ingest`) and by `pandas.DataFrame.to_sql`, into the
  same PostgreSQL database;
- monitoring: Evidently 0.7.23's DataDriftPreset (benchmarks/evidently_runner.py, its own virtualenv) on the same
  frames: the day's features and scores against the champion's reference sample.

Training builds twelve weekly feature snapshots (timed apart) and trains the spec's candidates on them. The data
(generator: 260 days from 2025-10-01, a drift from 7 days before the scoring date) is generated once per size and
reused while its config is unchanged; the raw history is validated once (as the earlier daily runs would have), so
the feature run validates only the newest day, as a daily run does. All other local state of a size is deleted at
its start. Figures go to benchmarks/results/chain.json (--quick: .local/bench/chain/quick.json), and the charts to
docs/img/ (benchmarks/chart.py).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent  # on sys.path as the script's folder: feature_job, evidently_runner import

BENCH_ROOT = REPO / ".local" / "bench" / "chain"
RESULTS = REPO / "benchmarks" / "results" / "chain.json"
QUICK_RESULTS = BENCH_ROOT / "quick.json"
DEFAULT_SIZES = "10000,100000,1000000"
QUICK_SIZES = "10000"
QUICK_TRIALS = 4
LARGE = 1_000_000  # from this size on, training needs a tuning sample (or fewer trials) to fit its 20-minute target

USE_CASE = "churn"
START = dt.date(2025, 10, 1)
DAYS = 260
AS_OF = START + dt.timedelta(days=DAYS)  # the day after the last landed day: features, training and scoring date
DRIFT_START = AS_OF - dt.timedelta(days=7)
DRIFT_STRENGTH = 1.0
SEED = 7
SPARK_MASTER = "local[2]"
LABEL = "chain"
RUN_ID = "benchmarks-chain"
EQUAL_TO = 1e-9  # Spark's and DuckDB's feature tables must agree this closely

TARGETS = {
    "fast_path_s": 180.0,  # 1M: features + scoring + publish
    "feature_task_ratio": 3.0,  # 200k and 1M: the feature job as a task runs it, against DuckDB
    "feature_warm_ratio": 2.0,
    "monitoring_speedup": 20.0,  # 1M: Evidently / ours
    "monitoring_s": 30.0,
    "training_s": 20 * 60.0,  # 1M, 2 cores
    "memory_growth": 1.3,  # "flat": peak memory grows less than this between the two largest sizes
}


def parse_size(text: str) -> int:
    t = text.strip().lower().replace("_", "").replace(",", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if factor > 1 else t) * factor)
    except ValueError:
        raise SystemExit(f"--sizes: {text!r} is not a number of customers (e.g. 100000, 100k, 1m)") from None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", help=f"comma-separated numbers of customers; default {DEFAULT_SIZES}")
    p.add_argument("--quick", action="store_true",
                   help=f"sizes {QUICK_SIZES}, {QUICK_TRIALS} tuning trials; figures to .local/bench/chain/quick.json")
    p.add_argument("--skip-evidently", action="store_true", help="leave out Evidently (the monitoring reference)")
    p.add_argument("--trials", type=int, help="tuning trials per candidate at every size (default: the spec's)")
    p.add_argument("--large-trials", type=int, default=4,
                   help=f"trials per candidate from {LARGE:,} customers when the spec offers no tuning sample option")
    p.add_argument("--tuning-sample-rows", type=int, default=1_000_000,
                   help="rows to tune on from {LARGE:,} customers, if TuningSpec has a sample option the spec leaves "
                        "unset")
    p.add_argument("--retrain", action="store_true",
                   help="re-run only the training stage of each size on the data and snapshots an earlier full run "
                        "left, and replace that stage's figures in the results file (after a change to training)")
    p.add_argument("--fast-path", action="store_true",
                   help="the scoring date's features, scoring, publish and monitoring again, on a full run's data and "
                        "champion (the other figures kept)")
    p.add_argument("--out", type=Path, help="results file (default: see --quick)")
    p.add_argument("--no-charts", action="store_true", help="do not redraw docs/img/chain_*.png")
    p.add_argument("--child", nargs=2, metavar=("STAGE", "PAYLOAD_JSON"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.trials is None and args.quick:
        args.trials = QUICK_TRIALS
    args.size_list = sorted({parse_size(s) for s in (args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES))
                             .split(",") if s.strip()})
    args.out = args.out or (QUICK_RESULTS if args.quick else RESULTS)
    return args


# Measuring a stage, inside its own process --------------------------------------------------------------------------


def _status_mb(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return 0.0


def _reset_hwm(pid: int) -> bool:
    """Reset a process's VmHWM to its current RSS (Linux: `5 > /proc/PID/clear_refs`)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Meter:
    """Wall time, CPU seconds and peak memory of each step of a stage, measured inside the stage's process.

    Memory is split by process: `python` (this process: the driver), `jvm` (`java` descendants: the Spark driver
    JVM) and `other`. Each step resets every process's VmHWM at its start and reads it at its end; a thread also
    polls the RSS of the process tree every `interval` seconds (for processes that end within a step, and for the
    peak of the sum). CPU is user + system time of the tree (and of waited-for children) over the step.
    """

    def __init__(self, interval: float = 0.2):
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.started = time.time()
        self.startup_s = self.started - self.me.create_time()  # interpreter start and the imports before this
        self.steps: dict[str, dict] = {}
        self.interval = interval
        self._peaks = {"python": 0.0, "jvm": 0.0, "other": 0.0, "total": 0.0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _tree(self) -> list:
        try:
            return [self.me, *self.me.children(recursive=True)]
        except self.psutil.Error:
            return [self.me]

    def _kind(self, proc) -> str:
        if proc.pid == self.me.pid:
            return "python"
        try:
            return "jvm" if proc.name() == "java" else "other"
        except self.psutil.Error:
            return "other"

    def _poll(self) -> None:
        while not self._stop.is_set():
            rss = {"python": 0.0, "jvm": 0.0, "other": 0.0}
            for proc in self._tree():
                try:
                    rss[self._kind(proc)] += proc.memory_info().rss / 2**20
                except self.psutil.Error:
                    pass
            with self._lock:
                for kind, value in rss.items():
                    self._peaks[kind] = max(self._peaks[kind], value)
                self._peaks["total"] = max(self._peaks["total"], sum(rss.values()))
            self._stop.wait(self.interval)

    def _cpu(self, procs) -> dict[int, float]:
        out = {}
        for proc in procs:
            try:
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system + (t.children_user + t.children_system if proc == self.me else 0.0)
            except self.psutil.Error:
                pass
        return out

    @contextlib.contextmanager
    def step(self, name: str, in_stage: bool = True):
        """Measure one step; the caller may add fields (e.g. `rows`) to the yielded record, during or after it."""
        procs = self._tree()
        for proc in procs:
            _reset_hwm(proc.pid)
        with self._lock:
            self._peaks = dict.fromkeys(self._peaks, 0.0)
        record: dict = {"in_stage": in_stage}
        self.steps[name] = record
        cpu0, load0 = self._cpu(procs), os.getloadavg()[0]
        t0 = time.perf_counter()
        yield record
        wall = time.perf_counter() - t0
        procs = self._tree()
        cpu1 = self._cpu(procs)
        hwm = {"python": 0.0, "jvm": 0.0, "other": 0.0}
        for proc in procs:
            hwm[self._kind(proc)] += _status_mb(proc.pid, "VmHWM")
        with self._lock:
            polled = dict(self._peaks)
        record.update({
            "wall_s": wall,
            "cpu_s": sum(v - cpu0.get(pid, 0.0) for pid, v in cpu1.items()),
            "peak_python_mb": max(hwm["python"], polled["python"]),
            "peak_jvm_mb": max(hwm["jvm"], polled["jvm"]),
            "peak_other_mb": max(hwm["other"], polled["other"]),
            "peak_total_mb": max(polled["total"], hwm["python"]),
            "jvm_processes": sum(self._kind(p) == "jvm" for p in procs),
            "load_1m": [load0, os.getloadavg()[0]],
        })

    def finish(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"startup_s": self.startup_s, "process_peak_python_mb": _status_mb(self.me.pid, "VmHWM"),
                "steps": self.steps}


# Stages: each runs in a child process (`--child STAGE PAYLOAD`) ----------------------------------------------------


def _env():
    from batchml.settings import get_settings
    from batchml.specs import get_spec

    settings = get_settings()
    return settings, get_spec(settings.specs_dir, USE_CASE)


def stage_generate(a: dict, meter: Meter) -> dict:
    from batchml.generate import generate
    from batchml.storage import Landing

    settings, _ = _env()
    with meter.step("generate") as rec:
        summary = generate(generator_config(a["customers"]), Landing(settings.landing_url))
    rec["rows"] = sum(summary.rows.values())
    return {"rows": rec["rows"], "rows_by_source": summary.rows, "skipped": summary.skipped, "files": summary.files}


def stage_raw_history(a: dict, meter: Meter) -> dict:
    """Validate every raw partition landed before the newest day, as the earlier daily feature runs would have."""
    from batchml.storage import Landing
    from batchml.validation import validate_raw

    settings, spec = _env()
    landing = Landing(settings.landing_url)
    newest = AS_OF - dt.timedelta(days=1)
    partitions = {s: landing.landed_days(s, before=newest) for s in spec.sources_read()}
    with meter.step("validate_raw_history") as rec:
        reports = validate_raw(spec, Path(settings.landing_url), newest, settings.gx_root, LABEL,
                               partitions=partitions, cache_root=settings.data_root / "validation_cache")
    rec["rows"] = sum(r.rows for r in reports)
    return {"rows": rec["rows"], "partitions": sum(len(d) for d in partitions.values())}


def stage_features(a: dict, meter: Meter) -> dict:
    """The feature DAG's tasks for the scoring date, in one fresh process: raw checks of the newest day, a fresh
    Spark session, the job (first run; then a warm second run in the same session, not published), feature checks,
    publish."""
    from batchml.features import build_feature_partition, publish_feature_partition
    from batchml.partitions import landed_raw
    from batchml.spark import spark_session
    from batchml.validation import validate_feature_partition, validate_raw_partitions

    settings, spec = _env()
    with meter.step("landed_raw"):
        landed = landed_raw(spec, settings, AS_OF)
    with meter.step("validate_raw") as rec:
        checked = validate_raw_partitions(spec, settings, landed, LABEL)
    rec["rows"] = sum(checked.raw_checks.values())
    session = spark_session(SPARK_MASTER, {}, f"{spec.dag_id('features')}-build_features")
    with meter.step("session_start"):
        spark = session.__enter__()
    try:
        with meter.step("job_first") as rec:
            staged = build_feature_partition(spark, spec, settings, checked, LABEL)
        rec["rows"] = staged.rows
        with meter.step("job_warm", in_stage=False) as rec:
            warm = build_feature_partition(spark, spec, settings, checked, f"{LABEL}-warm")
        rec["rows"] = warm.rows
    finally:
        with meter.step("session_stop"):
            session.__exit__(None, None, None)
    with meter.step("validate_features") as rec:
        validated = validate_feature_partition(spec, settings, staged, LABEL)
    rec["rows"] = validated.rows
    with meter.step("publish") as rec:
        published = publish_feature_partition(spec, settings, validated, RUN_ID)
    rec["rows"] = published.rows
    return {"rows": published.rows, "published": published.path, "expected_rows": validated.expected_rows}


def stage_features_duckdb(a: dict, meter: Meter) -> dict:
    """benchmarks/feature_job.py's DuckDB reference (its query, its runner, its comparison) on the same files: a
    first run in this fresh process, then a second one; the table must equal the published one to 1e-9."""
    from feature_job import compare, duckdb_sql, events_read, run_duckdb

    settings, spec = _env()
    raw_root = Path(settings.landing_url)
    out = Path(a["work"]) / "duckdb_features.parquet"
    sql = duckdb_sql(spec, raw_root, AS_OF)
    with meter.step("duckdb_runs") as both:
        runs = run_duckdb(sql, out, 2)
    worst = compare(a["published"], str(out), spec.entity.key)
    if worst > EQUAL_TO:
        raise SystemExit(f"Spark and DuckDB differ by {worst:g} (> {EQUAL_TO:g})")
    import pyarrow.parquet as pq

    both["rows"] = rows = pq.read_metadata(out).num_rows
    # each run's wall and CPU time as the runner measured them; peak memory: this process's VmHWM over both runs
    for i, name in enumerate(("duckdb_first", "duckdb_warm")):
        meter.steps[name] = {"in_stage": False, "wall_s": runs["runs_s"][i], "cpu_s": runs["cpu_s"][i],
                             "peak_python_mb": max(both["peak_python_mb"], runs["peak_rss_mb"]), "peak_jvm_mb": 0.0,
                             "peak_other_mb": 0.0, "peak_total_mb": both["peak_total_mb"], "rows": rows}
    return {"rows": rows, "max_abs_difference": worst, "events_read": events_read(spec, raw_root, AS_OF)}


def stage_snapshots(a: dict, meter: Meter) -> dict:
    """The training DAG's first task: every planned snapshot's feature partition built, checked and published in
    one Spark session (the raw history is already validated)."""
    import pyarrow.parquet as pq

    from batchml.datasets import ensure_snapshots
    from batchml.spark import spark_session
    from batchml.storage import feature_partition_file

    settings, spec = _env()
    app = f"{spec.dag_id('training')}-ensure_feature_snapshots"
    with meter.step("ensure_snapshots") as rec:
        ready = ensure_snapshots(lambda: spark_session(SPARK_MASTER, {}, app), spec, settings, AS_OF, LABEL)
    rec["rows"] = sum(pq.read_metadata(feature_partition_file(settings.features_root, spec.name, s)).num_rows
                      for s in ready.snapshots)
    return {"rows": rec["rows"], "snapshots": [s.isoformat() for s in ready.snapshots],
            "built": len(ready.built)}


def stage_training(a: dict, meter: Meter) -> dict:
    """The training DAG's other tasks: training set, tuned candidates, evaluation, registration and the gate."""
    from batchml.datasets import prepare_training_set
    from batchml.evaluation import evaluate
    from batchml.gate import register_and_gate
    from batchml.results import TrainingRequest
    from batchml.training import train_candidates

    settings, spec = _env()
    folder = settings.data_root / "training" / spec.name / LABEL
    with meter.step("training_set") as rec:
        ref = prepare_training_set(spec, settings, AS_OF, folder)
    rec["rows"] = sum(ref.rows.values())
    with meter.step("train_candidates") as rec:
        selected = train_candidates(spec, ref, a.get("trials"), None)
    rec["rows"] = ref.rows["train"] + ref.rows["valid"]
    with meter.step("evaluate") as rec:
        evaluated = evaluate(spec, selected)
    rec["rows"] = ref.rows["test"]
    with meter.step("register_and_gate"):
        gate = register_and_gate(spec, settings, evaluated, RUN_ID,
                                 TrainingRequest(training_date=AS_OF, reason="benchmarks/chain.py"))
    summary = json.loads((folder / "candidates.json").read_text())
    evaluation = json.loads((folder / "evaluation.json").read_text())
    return {"rows": sum(ref.rows.values()), "rows_by_split": ref.rows, "label_rate": ref.label_rate,
            "selected": selected.selected, "valid_score": selected.valid_score, "version": gate.version,
            "verdict": gate.verdict, "reasons": gate.reasons, "test_roc_auc": gate.test_roc_auc,
            "baseline_test_roc_auc": gate.baseline_test_roc_auc,
            "test_metrics": evaluation["test_metrics"], "shap_seconds": evaluation.get("shap_seconds"),
            "tuning": {"trials": spec.training.tuning.trials if a.get("trials") is None else a["trials"],
                       "timeout_seconds": spec.training.tuning.timeout_seconds,
                       "spec": spec.training.tuning.model_dump(mode="json")},
            "candidates": [{k: c.get(k) for k in ("name", "kind", "score", "trials", "seconds", "preset")}
                           for c in summary["candidates"]]}


def stage_scoring(a: dict, meter: Meter) -> dict:
    """The scoring DAG's first tasks: pin the champion, score the day's features (deciles, bands, reason codes)
    into a staged file. The staged file is then copied aside (not timed) for the publish references."""
    from batchml.scoring import pin_models, score_features

    settings, spec = _env()
    with meter.step("pin_models"):
        pinned = pin_models(spec, settings)
    with meter.step("score_features") as rec:
        staged = score_features(spec, settings, AS_OF, pinned, RUN_ID, LABEL)
    rec["rows"] = staged.rows
    Path(a["scores_copy"]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(staged.staged_file, a["scores_copy"])
    return {"rows": staged.rows, "entities": staged.entities, "champion": pinned.champion,
            "challenger": pinned.challenger, "seconds": staged.seconds, "exact_reason_rows": staged.exact_reason_rows,
            "handoff": staged.to_xcom()}


def stage_scoring_raw(a: dict, meter: Meter) -> dict:
    """Reference: the champion's raw booster on the same rows (read, transform, `estimator.predict_proba`)."""
    import pandas as pd

    from batchml import registry
    from batchml.storage import feature_partition_file

    settings, spec = _env()
    registry.connect(settings)
    with meter.step("load_model", in_stage=False):
        model = registry.load_batch_model(f"models:/{spec.model_name}/{a['champion']}")
    with meter.step("read") as rec:
        frame = pd.read_parquet(feature_partition_file(settings.features_root, spec.name, AS_OF),
                                columns=model.features)
    rec["rows"] = len(frame)
    with meter.step("transform") as rec:
        X = model.transform(frame)
    rec["rows"] = len(X)
    with meter.step("predict") as rec:
        p = model.estimator.predict_proba(X)[:, 1]
    rec["rows"] = len(p)
    return {"rows": len(p), "kind": model.kind, "mean_raw_score": float(p.mean())}


def stage_publish(a: dict, meter: Meter) -> dict:
    """The scoring DAG's last tasks: bulk load (ADBC COPY), Great Expectations in the warehouse, the swap."""
    from batchml.results import StagedScores
    from batchml.score_table import load_staging, publish_scores
    from batchml.validation import validate_scores

    settings, spec = _env()
    staged = StagedScores.from_xcom(a["handoff"])
    with meter.step("load_staging") as rec:
        loaded = load_staging(spec, settings, staged, LABEL)
    rec["rows"] = loaded.rows
    with meter.step("validate_scores") as rec:
        checked = validate_scores(spec, settings, loaded, LABEL)
    rec["rows"] = checked.rows
    with meter.step("publish_scores") as rec:
        published = publish_scores(spec, settings, checked)
    rec["rows"] = published.rows
    return {"rows": published.rows, "seconds": published.seconds, "table": published.table}


def stage_publish_adbc(a: dict, meter: Meter) -> dict:
    """Reference: the same rows by ADBC's binary COPY (`adbc_ingest`) into a new table, streamed in batches."""
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, spec = _env()
    file = pq.ParquetFile(a["scores_copy"])
    with meter.step("adbc_ingest") as rec:
        reader = pa.RecordBatchReader.from_batches(file.schema_arrow,
                                                   file.iter_batches(batch_size=spec.scoring.chunk_rows))
        with adbc.connect(a["libpq_url"]) as conn:
            with conn.cursor() as cur:
                cur.adbc_ingest("bench_adbc_scores", reader, mode="replace")
            conn.commit()
    rec["rows"] = file.metadata.num_rows
    return {"rows": rec["rows"]}


def stage_publish_to_sql(a: dict, meter: Meter) -> dict:
    """Reference: the same rows as one DataFrame, `to_sql` into a new table (reading the file apart)."""
    import pandas as pd
    import sqlalchemy as sa

    with meter.step("read", in_stage=False):
        frame = pd.read_parquet(a["scores_copy"])
    engine = sa.create_engine(a["url"])
    with meter.step("to_sql") as rec:
        frame.to_sql("bench_to_sql_scores", engine, if_exists="replace", index=False, chunksize=50_000)
    rec["rows"] = len(frame)
    engine.dispose()
    return {"rows": len(frame)}


def stage_monitoring(a: dict, meter: Meter) -> dict:
    """The monitoring DAG's drift task; then (not timed) the same frames written for Evidently: the champion's
    reference sample, and the day's features with their scores."""
    import pandas as pd

    from batchml import registry
    from batchml import warehouse as wh
    from batchml.drift import load_reference
    from batchml.monitoring import compute_drift
    from batchml.score_table import read_scores
    from batchml.storage import feature_partition_file

    settings, spec = _env()
    with meter.step("compute_drift") as rec:
        drift = compute_drift(spec, settings, AS_OF)
    if drift.skipped:
        raise SystemExit(f"compute_drift skipped: {drift.skipped}")
    details = json.loads(Path(drift.drift_file).read_text())
    rec["rows"] = details["rows"]
    ours = sorted({"score" if f["metric"] == "score_psi" else f["feature"] for f in details["figures"]
                   if f["status"] == "alert" and f["metric"] in ("psi", "ks_statistic", "unseen_share", "score_psi")})

    work = Path(a["work"])
    client = registry.connect(settings)
    profile, sample = load_reference(registry.download_reference(client, spec.model_name, drift.model_version,
                                                                 work / "evidently_reference"))
    features = list(profile["features"])
    categorical = [f for f, ref in profile["features"].items() if ref["kind"] == "categorical"]
    key = spec.entity.key
    scores = read_scores(wh.engine(settings.warehouse_url), spec.score_table, key, AS_OF)
    current = pd.read_parquet(feature_partition_file(settings.features_root, spec.name, AS_OF), columns=[key, *features])
    current = current.merge(scores[[key, "score"]], on=key, how="inner")
    frames = {"reference": str(work / "evidently_reference.parquet"), "current": str(work / "evidently_current.parquet")}
    sample[[*features, "score"]].to_parquet(frames["reference"], index=False)
    current[[*features, "score"]].to_parquet(frames["current"], index=False)
    return {"rows": details["rows"], "reference_rows": len(sample), "summary": drift.summary,
            "seconds": details.get("seconds", {}),
            "model_version": drift.model_version, "alert_columns": ours, "frames": frames,
            "columns": [*features, "score"], "categorical": categorical}


CHILD_STAGES = {
    "generate": stage_generate, "raw_history": stage_raw_history, "features": stage_features,
    "features_duckdb": stage_features_duckdb, "snapshots": stage_snapshots, "training": stage_training,
    "scoring": stage_scoring, "scoring_raw": stage_scoring_raw, "publish": stage_publish,
    "publish_adbc": stage_publish_adbc, "publish_to_sql": stage_publish_to_sql, "monitoring": stage_monitoring,
}


def child_main(stage: str, payload: str) -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "great_expectations", "mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    a = json.loads(payload)
    meter = Meter()
    try:
        extra = CHILD_STAGES[stage](a, meter)
    finally:
        measured = meter.finish()
    Path(a["out"]).write_text(json.dumps({"stage": stage, **measured, **extra}, default=str))


# The run: sizes, stages, references ---------------------------------------------------------------------------------


def generator_config(customers: int):
    from batchml.generate import GeneratorConfig

    return GeneratorConfig(customers=customers, start=START, days=DAYS, seed=SEED, drift_start=DRIFT_START,
                           drift_strength=DRIFT_STRENGTH)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"load average {os.getloadavg()}"


def prepare_home(home: Path) -> None:
    """Delete a size's local state except its generated data (and the figures of the run that generated it)."""
    home.mkdir(parents=True, exist_ok=True)
    keep = {home / "data" / "landing", home / "generator.json"}
    for entry in home.iterdir():
        if entry == home / "data":
            for sub in entry.iterdir():
                if sub not in keep:
                    shutil.rmtree(sub) if sub.is_dir() else sub.unlink()
        elif entry not in keep:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def tuning_plan(args, customers: int) -> dict:
    """How training tunes at this size: the spec's budget; from LARGE customers, a tuning sample if TuningSpec
    offers one (checked now: another engineer may add it), else fewer trials."""
    from batchml.specs import get_spec
    from batchml.specs.stages import TuningSpec

    spec = get_spec(REPO / "specs", USE_CASE)
    fields = [n for n in TuningSpec.model_fields if "sample" in n]
    plan = {"trials": args.trials, "sample_option": fields[0] if fields else None, "set": {}}
    if args.trials is not None:
        plan["why"] = f"--trials {args.trials}" + (" (--quick)" if args.quick else "")
    elif customers < LARGE:
        plan["why"] = f"the spec's budget ({spec.training.tuning.trials} trials, " \
                      f"{spec.training.tuning.timeout_seconds} s per candidate)"
    elif fields:
        current = getattr(spec.training.tuning, fields[0])
        if current is None:
            plan["set"] = {fields[0]: args.tuning_sample_rows}
        plan["why"] = (f"the spec's trials with training.tuning.{fields[0]} = "
                       f"{plan['set'].get(fields[0], current)}")
    else:
        plan["trials"] = args.large_trials
        plan["why"] = (f"{args.large_trials} trials per candidate instead of the spec's {spec.training.tuning.trials} "
                       "(TuningSpec has no tuning sample option)")
    return plan


def write_spec(home: Path, overrides: dict) -> Path:
    """The size's specs folder: specs/churn.yaml as it is, or with training.tuning overrides."""
    import yaml

    folder = home / "specs"
    folder.mkdir(parents=True, exist_ok=True)
    source = REPO / "specs" / f"{USE_CASE}.yaml"
    target = folder / source.name
    if not overrides:
        shutil.copyfile(source, target)
        return folder
    data = yaml.safe_load(source.read_text())
    data.setdefault("training", {}).setdefault("tuning", {}).update(overrides)
    target.write_text(f"# {source.relative_to(REPO)} with training.tuning {overrides} (benchmarks/chain.py)\n"
                      + yaml.safe_dump(data, sort_keys=False))
    return folder


def create_database(pg, name: str) -> tuple[str, str]:
    """A fresh database on the run's server: (SQLAlchemy URL, libpq URL)."""
    import psycopg

    with psycopg.connect(pg.libpq_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg.url.rsplit("/", 1)[0] + f"/{name}", pg.libpq_url.rsplit("/", 1)[0] + f"/{name}"


class SizeRun:
    """The stages of one size, each in a fresh subprocess with the size's environment."""

    def __init__(self, home: Path, url: str):
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHML_")}
        self.env.update({
            "BATCHML_HOME": str(home), "BATCHML_WAREHOUSE_URL": url, "BATCHML_SPECS_DIR": str(home / "specs"),
            "PYTHONPATH": str(BENCH), "GX_ANALYTICS_ENABLED": "false",
            "PYSPARK_PYTHON": sys.executable, "PYTHONUNBUFFERED": "1",
        })
        self.logs = home / "logs"
        self.work = home / "bench"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)

    def run(self, stage: str, **payload) -> dict:
        out = self.work / f"{stage}.json"
        out.unlink(missing_ok=True)
        log = self.logs / f"{stage}.log"
        payload = {**payload, "out": str(out), "work": str(self.work), "home": str(self.home)}
        print(f"    {stage:<16}", end="", flush=True)
        t0 = time.perf_counter()
        with open(log, "w") as fh:
            done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", stage,
                                   json.dumps(payload, default=str)], env=self.env, stdout=fh, stderr=subprocess.STDOUT)
        process_s = time.perf_counter() - t0
        if done.returncode != 0 or not out.exists():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            print(f"FAILED (exit {done.returncode})\n{tail}\n    full log: {log}", flush=True)
            raise SystemExit(f"stage {stage} failed")
        result = json.loads(out.read_text())
        result["process_s"] = process_s
        summary = summarize(result)
        result.update(summary)
        print(f"{summary['wall_s']:8.1f} s  ({summary['cpu_s']:.0f} CPU s, Python {summary['peak_python_mb']:,.0f} MB"
              + (f", JVM {summary['peak_jvm_mb']:,.0f} MB" if summary["peak_jvm_mb"] else "")
              + f"; process {process_s:.0f} s)", flush=True)
        return result


def summarize(result: dict) -> dict:
    """A stage's figures from its steps: the steps counted in the stage (`in_stage`) summed, peaks the largest."""
    steps = [s for s in result["steps"].values() if s.get("in_stage", True)]
    wall = sum(s["wall_s"] for s in steps)
    out = {"wall_s": wall, "cpu_s": sum(s["cpu_s"] for s in steps),
           "peak_python_mb": max((s["peak_python_mb"] for s in steps), default=0.0),
           "peak_jvm_mb": max((s["peak_jvm_mb"] for s in steps), default=0.0),
           "peak_total_mb": max((s["peak_total_mb"] for s in steps), default=0.0)}
    rows = result.get("rows")
    if isinstance(rows, int | float) and wall > 0:
        out["rows_per_s"] = rows / wall
    return out


def step_figures(result: dict, *names: str) -> dict:
    """Figures of some steps of a stage taken together (wall and CPU summed, peaks the largest)."""
    steps = [result["steps"][n] for n in names]
    return {"wall_s": sum(s["wall_s"] for s in steps), "cpu_s": sum(s["cpu_s"] for s in steps),
            "peak_python_mb": max(s["peak_python_mb"] for s in steps),
            "peak_jvm_mb": max(s.get("peak_jvm_mb", 0.0) for s in steps),
            "rows": steps[-1].get("rows")}


def run_generation(run: SizeRun, customers: int) -> dict:
    """Generate the size's data, or reuse it: the generator skips a config it already landed; the figures of the
    run that did the work are kept beside the data (`generator.json`) and reported instead of the skip."""
    cfg = json.loads(generator_config(customers).to_json())
    sidecar = run.home / "generator.json"
    previous = json.loads(sidecar.read_text()) if sidecar.exists() else None
    landing = run.home / "data" / "landing"
    if previous is not None and previous["config"] != cfg and landing.exists():
        shutil.rmtree(landing)  # another config: no partition of the old one may stay behind
        previous = None
    result = run.run("generate", customers=customers)
    if result["skipped"] and previous is not None:
        return {**previous["result"], "reused": True}
    if result["skipped"]:  # landed by an earlier run that kept no figures: measured again next time
        shutil.rmtree(landing)
        result = run.run("generate", customers=customers)
    sidecar.write_text(json.dumps({"config": cfg, "result": result}, default=str))
    return {**result, "reused": False}


def run_size(args, pg, customers: int, evidently) -> dict:
    home = BENCH_ROOT / str(customers)
    print(f"\n{customers:,} customers (BATCHML_HOME={home.relative_to(REPO)}) [{uptime()}]", flush=True)
    prepare_home(home)
    url, libpq_url = create_database(pg, f"chain_{customers}")
    plan = tuning_plan(args, customers)
    write_spec(home, plan["set"])
    run = SizeRun(home, url)
    scores_copy = str(run.work / "scores.parquet")
    stages: dict[str, dict] = {}
    refs: dict[str, dict] = {}
    load_before = os.getloadavg()[0]
    stages["generate"] = run_generation(run, customers)
    stages["raw_history"] = run.run("raw_history")
    stages["features"] = run.run("features")
    refs["duckdb"] = run.run("features_duckdb", published=stages["features"]["published"])
    stages["snapshots"] = run.run("snapshots")
    stages["training"] = run.run("training", trials=plan["trials"])
    if stages["training"]["verdict"] != "champion":
        raise SystemExit(f"the trained model is not the champion ({stages['training']['verdict']}: "
                         f"{stages['training']['reasons']}): nothing to score")
    run_serving(run, stages, refs, evidently, scores_copy, url, libpq_url)
    out = {"customers": customers, "home": str(home.relative_to(REPO)), "tuning": plan, "stages": stages,
           "references": refs, "load_1m_before_after": [load_before, os.getloadavg()[0]], "uptime_after": uptime()}
    out["derived"] = derive(out)
    report_size(out)
    return out


def run_serving(run: SizeRun, stages: dict, refs: dict, evidently, scores_copy: str, url: str,
                libpq_url: str) -> None:
    """Scoring, publish and monitoring of the scoring date, each beside its references, into `stages`/`refs`."""
    stages["scoring"] = run.run("scoring", scores_copy=scores_copy)
    refs["raw_predict"] = run.run("scoring_raw", champion=stages["scoring"]["champion"])
    stages["publish"] = run.run("publish", handoff=stages["scoring"]["handoff"])
    refs["adbc"] = run.run("publish_adbc", scores_copy=scores_copy, libpq_url=libpq_url)
    refs["to_sql"] = run.run("publish_to_sql", scores_copy=scores_copy, url=url)
    stages["monitoring"] = run.run("monitoring")
    if evidently is not None:
        mon = stages["monitoring"]
        print(f"    {'evidently':<16}", end="", flush=True)
        ev = evidently(mon["frames"]["reference"], mon["frames"]["current"], mon["columns"], mon["categorical"])
        ev.update({"wall_s": ev["drift_s"], "cpu_s": ev["drift_cpu_s"], "peak_python_mb": ev["peak_rss_mb"],
                   "peak_jvm_mb": 0.0, "rows": ev["rows_current"]})
        print(f"{ev['drift_s']:8.1f} s  ({ev['drift_cpu_s']:.0f} CPU s, {ev['peak_rss_mb']:,.0f} MB; process "
              f"{ev['process_s']:.0f} s; drifted {ev['drifted_count']} of {len(mon['columns'])} columns)", flush=True)
        refs["evidently"] = ev


def fast_path_size(args, pg, customers: int, previous: dict, evidently) -> dict:
    """The scoring date's feature run, scoring, publish and monitoring again (each beside its reference), on the
    data, snapshots and champion of the size's last full run; generation and training figures kept. What a daily run
    pays only: the newest day's raw checks, the date's feature partition and the monitoring state are removed first,
    so nothing is found done."""
    home = BENCH_ROOT / str(customers)
    print(f"\n{customers:,} customers, the daily path again (BATCHML_HOME={home.relative_to(REPO)}) [{uptime()}]",
          flush=True)
    if not (home / "mlflow.db").exists():
        raise SystemExit(f"{home}: no trained champion; run the full chain at {customers:,} first "
                         f"(.venv/bin/python benchmarks/chain.py --sizes {customers})")
    newest = f"{(AS_OF - dt.timedelta(days=1)).isoformat()}"
    for entry in [home / "data" / "features" / USE_CASE / f"dt={AS_OF.isoformat()}", home / "data" / "monitoring",
                  home / "data" / "staging", *(home / "data" / "validation_cache").glob(f"*/dt={newest}.json")]:
        if entry.exists():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    url, libpq_url = create_database(pg, f"chain_{customers}_fast")
    run = SizeRun(home, url)
    stages, refs = {**previous["stages"]}, {**previous["references"]}
    stages["features"] = run.run("features")
    refs["duckdb"] = run.run("features_duckdb", published=stages["features"]["published"])
    run_serving(run, stages, refs, evidently, str(run.work / "scores.parquet"), url, libpq_url)
    out = {**previous, "stages": stages, "references": refs, "uptime_after": uptime(),
           "fast_path_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    out["derived"] = derive(out)
    report_size(out)
    return out


def retrain_size(args, pg, customers: int, previous: dict) -> dict:
    """Only the training stage of a size, on the snapshots its last full run built; the other figures kept."""
    home = BENCH_ROOT / str(customers)
    print(f"\n{customers:,} customers, training only (BATCHML_HOME={home.relative_to(REPO)}) [{uptime()}]", flush=True)
    snapshots = home / "data" / "features" / USE_CASE
    if not snapshots.exists():
        raise SystemExit(f"{snapshots}: no feature snapshots; run the full chain at {customers:,} first "
                         f"(.venv/bin/python benchmarks/chain.py --sizes {customers})")
    for entry in (home / "mlflow.db", home / "mlartifacts", home / "data" / "training"):
        if entry.exists():  # a fresh registry: the gate has no champion to compare with, as in the full run
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    url, _ = create_database(pg, f"chain_{customers}_retrain")
    plan = tuning_plan(args, customers)
    write_spec(home, plan["set"])
    out = {**previous, "tuning": plan, "stages": {**previous["stages"]}}
    out["stages"]["training"] = SizeRun(home, url).run("training", trials=plan["trials"])
    out["retrained_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    out["derived"] = derive(out)
    report_size(out)
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def derive(size: dict) -> dict:
    """The rows of the report: each stage (and its parts) with its reference and the ratio."""
    st, rf = size["stages"], size["references"]
    f = st["features"]
    first, warm = step_figures(f, "job_first"), step_figures(f, "job_warm")
    session = step_figures(f, "session_start")
    duck_first, duck_warm = rf["duckdb"]["steps"]["duckdb_first"], rf["duckdb"]["steps"]["duckdb_warm"]
    raw_pred = {k: sum(rf["raw_predict"]["steps"][s][k] for s in ("read", "transform", "predict"))
                for k in ("wall_s", "cpu_s")}
    events = sum(rf["duckdb"]["events_read"].values())
    d = {
        "rows": {"features": f["rows"], "events_read": events, "scored": st["scoring"]["rows"],
                 "training": st["training"]["rows"]},
        "features_task_s": f["wall_s"], "features_startup_s": f["startup_s"], "session_start_s": session["wall_s"],
        "job_first_s": first["wall_s"], "job_first_cpu_s": first["cpu_s"], "job_warm_s": warm["wall_s"],
        "job_warm_cpu_s": warm["cpu_s"], "events_per_s_warm": events / warm["wall_s"],
        "duckdb_first_s": duck_first["wall_s"], "duckdb_warm_s": duck_warm["wall_s"],
        "ratio_job_first_duckdb": ratio(first["wall_s"], duck_first["wall_s"]),
        "ratio_job_first_with_session_duckdb": ratio(first["wall_s"] + session["wall_s"], duck_first["wall_s"]),
        "ratio_feature_task_duckdb": ratio(f["wall_s"], duck_first["wall_s"]),
        "ratio_job_warm_duckdb": ratio(warm["wall_s"], duck_warm["wall_s"]),
        "ratio_cpu_job_warm_duckdb": ratio(warm["cpu_s"], duck_warm["cpu_s"]),
        "max_abs_difference": rf["duckdb"]["max_abs_difference"],
        "raw_predict_s": raw_pred["wall_s"], "raw_predict_only_s": rf["raw_predict"]["steps"]["predict"]["wall_s"],
        "ratio_scoring_raw_predict": ratio(st["scoring"]["wall_s"], raw_pred["wall_s"]),
        "adbc_s": rf["adbc"]["wall_s"], "to_sql_s": rf["to_sql"]["wall_s"],
        "ratio_publish_adbc": ratio(st["publish"]["wall_s"], rf["adbc"]["wall_s"]),
        "ratio_load_staging_adbc": ratio(st["publish"]["steps"]["load_staging"]["wall_s"], rf["adbc"]["wall_s"]),
        "ratio_publish_to_sql": ratio(st["publish"]["wall_s"], rf["to_sql"]["wall_s"]),
        "fast_path_s": f["wall_s"] + st["scoring"]["wall_s"] + st["publish"]["wall_s"],
        "training_s": st["training"]["wall_s"], "training_with_snapshots_s": st["training"]["wall_s"]
        + st["snapshots"]["wall_s"], "champion_test_roc_auc": st["training"]["test_roc_auc"],
        "monitoring_s": st["monitoring"]["wall_s"],
    }
    if "evidently" in rf:
        ev = rf["evidently"]
        d.update({"evidently_s": ev["drift_s"], "evidently_process_s": ev["process_s"],
                  "ratio_monitoring_evidently": ratio(st["monitoring"]["wall_s"], ev["drift_s"]),
                  "evidently_speedup": ratio(ev["drift_s"], st["monitoring"]["wall_s"]),
                  # like with like: our comparison alone (compute_drift's `compare` step) against Evidently's
                  # computation alone (both without reading their inputs)
                  "monitoring_compare_s": st["monitoring"]["seconds"].get("compare"),
                  "evidently_speedup_compare": ratio(ev["drift_s"], st["monitoring"]["seconds"].get("compare")),
                  "evidently_drifted": ev["drifted_columns"], "ours_alerts": st["monitoring"]["alert_columns"]})
    return d


# Reporting ----------------------------------------------------------------------------------------------------------


STAGE_ROWS = [  # (key, label, what its rows are)
    ("generate", "generate (raw data, once)", "raw rows landed"),
    ("raw_history", "raw checks of the history (once)", "raw rows checked"),
    ("features", "features, as a task", "feature rows"),
    ("snapshots", "training snapshots (12)", "feature rows"),
    ("training", "training (set, tune, evaluate, gate)", "training rows"),
    ("scoring", "scoring (pin, score, reason codes)", "rows scored"),
    ("publish", "publish (COPY, checks, swap)", "rows published"),
    ("monitoring", "monitoring (compute_drift)", "rows compared"),
]


def _n(value, fmt: str = ",.0f", none: str = "-") -> str:
    return none if value is None else format(value, fmt)


def _ratio_text(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.2f}x" + (f" ({1 / r:.1f}x faster)" if r < 1 else "")


def table_rows(size: dict) -> list[tuple]:
    """(label, wall, CPU, rows, rows/s, Python MB, JVM MB, reference, reference s, ours / reference)."""
    st, d = size["stages"], size["derived"]
    out = []

    def row(label, fig, ref_label="", ref_s=None, r=None, rows=None):
        rows = fig.get("rows") if rows is None else rows
        rps = rows / fig["wall_s"] if rows and fig["wall_s"] else None
        out.append((label, _n(fig["wall_s"], ",.1f"), _n(fig["cpu_s"], ",.1f"), _n(rows), _n(rps),
                    _n(fig.get("peak_python_mb")), _n(fig.get("peak_jvm_mb") or None), ref_label,
                    _n(ref_s, ",.1f", ""), _ratio_text(r) if ref_label else ""))

    for key, label, _ in STAGE_ROWS:
        fig = st[key]
        if key == "generate":
            row(label + (" (reused)" if fig.get("reused") else ""), fig)
        elif key == "features":
            row(label, fig, "DuckDB, first run", d["duckdb_first_s"], d["ratio_feature_task_duckdb"])
            f = st["features"]
            out.append(("  process start + imports", _n(f["startup_s"], ",.1f"), "", "", "", "", "", "", "", ""))
            for step, text in (("validate_raw", "  raw checks, newest day"), ("session_start", "  Spark session start")):
                row(text, step_figures(f, step))
            row("  feature job, first run", step_figures(f, "job_first"), "DuckDB, first run", d["duckdb_first_s"],
                d["ratio_job_first_duckdb"])
            row("  feature job, warm (same session)", step_figures(f, "job_warm"), "DuckDB, second run",
                d["duckdb_warm_s"], d["ratio_job_warm_duckdb"])
            for step, text in (("validate_features", "  feature checks"), ("publish", "  publish")):
                row(text, step_figures(f, step))
        elif key == "scoring":
            row(label, fig, "raw booster: read+predict", d["raw_predict_s"], d["ratio_scoring_raw_predict"])
            row("  score_features", step_figures(fig, "score_features"), "raw booster: predict",
                d["raw_predict_only_s"], ratio(step_figures(fig, "score_features")["wall_s"], d["raw_predict_only_s"]))
        elif key == "publish":
            row(label, fig, "ADBC COPY (adbc_ingest)", d["adbc_s"], d["ratio_publish_adbc"])
            for step in ("load_staging", "validate_scores", "publish_scores"):
                fig_s = step_figures(fig, step)
                if step == "load_staging":
                    row(f"  {step}", fig_s, "ADBC COPY", d["adbc_s"], d["ratio_load_staging_adbc"])
                else:
                    row(f"  {step}", fig_s)
            out.append(("", "", "", "", "", "", "", "pandas to_sql", _n(d["to_sql_s"], ",.1f", ""),
                        _ratio_text(d["ratio_publish_to_sql"])))
        elif key == "monitoring":
            if "evidently_s" in d:
                row(label, fig, "Evidently DataDriftPreset", d["evidently_s"], d["ratio_monitoring_evidently"])
            else:
                row(label, fig, "Evidently (skipped)")
        elif key == "training":
            row(label, fig)
            for step in ("training_set", "train_candidates", "evaluate", "register_and_gate"):
                row(f"  {step}", step_figures(fig, step))
        else:
            row(label, fig)
    return out


HEADER = ("stage", "wall s", "CPU s", "rows", "rows/s", "Python MB", "JVM MB", "reference", "ref s", "ours/ref")


def print_table(rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    right = {1, 2, 3, 4, 5, 6, 8}
    for r in [HEADER, *rows]:
        print("  " + "  ".join(str(v).rjust(w) if i in right else str(v).ljust(w)
                               for i, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip())


def report_size(size: dict) -> None:
    d, st = size["derived"], size["stages"]
    print(f"\n  {size['customers']:,} customers: {d['rows']['features']:,} active customers scored on {AS_OF}, "
          f"{d['rows']['events_read']:,} events in the feature window, {d['rows']['training']:,} training rows")
    print_table(table_rows(size))
    sc = st["scoring"]
    print(f"  score_features steps (s): {', '.join(f'{k} {v:.1f}' for k, v in sc['seconds'].items())}; exact reason "
          f"codes for {sc['exact_reason_rows']:,} of {sc['entities']:,} rows")
    tr = st["training"]
    print(f"  champion: {tr['selected']} v{tr['version']} ({tr['verdict']}), test ROC AUC {tr['test_roc_auc']:.4f} "
          f"(baseline {tr['baseline_test_roc_auc']:.4f}); tuning: {size['tuning']['why']}")
    print(f"  Spark vs DuckDB: same table (max abs difference {d['max_abs_difference']:.1e}); warm job "
          f"{d['events_per_s_warm']:,.0f} events/s; first run + session start {d['ratio_job_first_with_session_duckdb']:.2f}x "
          f"DuckDB; CPU warm {d['ratio_cpu_job_warm_duckdb']:.2f}x")
    if "evidently_s" in d:
        print(f"  drift alerts: ours {len(d['ours_alerts'])} ({', '.join(d['ours_alerts']) or 'none'}); Evidently "
              f"drifted {len(d['evidently_drifted'])} ({', '.join(d['evidently_drifted']) or 'none'})")


def slopes(sizes: list[dict]) -> dict[str, float]:
    """Log-log slope of wall time against customers (least squares), per stage and reference."""
    import numpy as np

    if len(sizes) < 2:
        return {}
    x = np.log([s["customers"] for s in sizes])
    series = {key: [s["stages"][key]["wall_s"] for s in sizes] for key, _, _ in STAGE_ROWS}
    for key, name in (("job_first_s", "feature job, first run"), ("job_warm_s", "feature job, warm"),
                      ("duckdb_first_s", "DuckDB, first run"), ("raw_predict_s", "raw booster"),
                      ("adbc_s", "ADBC COPY"), ("to_sql_s", "pandas to_sql"), ("evidently_s", "Evidently")):
        if all(key in s["derived"] for s in sizes):
            series[name] = [s["derived"][key] for s in sizes]
    return {k: float(np.polyfit(x, np.log(np.maximum(v, 1e-3)), 1)[0]) for k, v in series.items()}


def targets(sizes: list[dict]) -> list[dict]:
    """Each target against the figures of the sizes it applies to (or, when those did not run, the largest)."""
    out = []
    by_size = {s["customers"]: s for s in sizes}
    largest = sizes[-1]

    def add(name, size, value, goal, met, text):
        out.append({"target": name, "customers": size["customers"], "value": value, "goal": goal, "met": met,
                    "text": text, "applies": size["customers"] >= LARGE or name.startswith("feature job")
                    and size["customers"] >= 200_000})

    big = by_size.get(LARGE, largest)
    d = big["derived"]
    add("features + scoring + publish", big, d["fast_path_s"], TARGETS["fast_path_s"],
        d["fast_path_s"] < TARGETS["fast_path_s"], f"{d['fast_path_s']:.1f} s (goal < 180 s at 1M)")
    for key in ("scoring", "publish"):
        peaks = [(s["customers"], s["stages"][key]["peak_python_mb"]) for s in sizes]
        growth = peaks[-1][1] / peaks[-2][1] if len(peaks) > 1 else None
        add(f"memory flat in {key}", largest, growth, TARGETS["memory_growth"],
            growth is not None and growth < TARGETS["memory_growth"],
            "peak Python MB " + ", ".join(f"{mb:,.0f} at {c:,}" for c, mb in peaks)
            + (f": x{growth:.2f} over the last step" if growth else ""))
    for s in sizes:
        d = s["derived"]
        add("feature job as a task vs DuckDB", s, d["ratio_job_first_duckdb"], TARGETS["feature_task_ratio"],
            d["ratio_job_first_duckdb"] <= TARGETS["feature_task_ratio"],
            f"{d['ratio_job_first_duckdb']:.2f}x first run (with session start {d['ratio_job_first_with_session_duckdb']:.2f}x), "
            f"warm {d['ratio_job_warm_duckdb']:.2f}x (goals 3x / 2x at 200k and 1M) at {s['customers']:,}")
        add("feature job warm vs DuckDB", s, d["ratio_job_warm_duckdb"], TARGETS["feature_warm_ratio"],
            d["ratio_job_warm_duckdb"] <= TARGETS["feature_warm_ratio"], "")
    d = big["derived"]
    if "evidently_speedup" in d:
        like = d.get("evidently_speedup_compare") or d["evidently_speedup"]
        add("monitoring vs Evidently", big, like, TARGETS["monitoring_speedup"],
            like >= TARGETS["monitoring_speedup"] and d["monitoring_s"] < TARGETS["monitoring_s"],
            f"comparison alone {like:.1f}x faster than Evidently's computation; whole drift task "
            f"{d['monitoring_s']:.1f} s over {d['rows']['scored']:,} rows, {d['evidently_speedup']:.1f}x faster "
            "(goal >= 20x and < 30 s at 1M)")
    add("training", big, d["training_s"], TARGETS["training_s"], d["training_s"] < TARGETS["training_s"],
        f"{d['training_s'] / 60:.1f} min ({d['training_with_snapshots_s'] / 60:.1f} min with the snapshots), "
        f"champion test ROC AUC {d['champion_test_roc_auc']:.4f}, tuning: {big['tuning']['why']} "
        "(goal < 20 min at 1M)")
    return out


def report(res: dict) -> None:
    print("\n" + "=" * 100)
    print(f"Whole chain, churn use case, scoring date {AS_OF}; {res['machine']['cores']} cores, Spark "
          f"{SPARK_MASTER}, PostgreSQL warehouse, SQLite MLflow")
    print(f"host speed probe: {res['machine'].get('speed')}")
    print(f"load: before {res['machine']['uptime_before']}\n      after  {res['machine']['uptime_after']}")
    for size in res["sizes"]:
        report_size(size)
    if res["slopes"]:
        sizes = " -> ".join(f"{s['customers']:,}" for s in res["sizes"])
        print(f"\nlog-log slope of wall time against customers ({sizes}; 1 = linear):")
        print("  " + ", ".join(f"{k} {v:.2f}" for k, v in res["slopes"].items()))
    print("\ntargets (benchmark figures, not timed tests):")
    for t in res["targets"]:
        if not t["text"]:
            continue
        verdict = ("met" if t["met"] else "NOT met") if t["applies"] else \
            ("would be met" if t["met"] else "not met") + f" (at {t['customers']:,}; the goal is for larger sizes)"
        print(f"  {t['target']}: {t['text']}: {verdict}")
    print(f"\nreproduce: {res['command']}" + (f"\n  then, training again: {res['retrain_command']}"
                                               if res.get("retrain_command") else "")
          + f"\nwritten: {res['results_file']}")


# Main ---------------------------------------------------------------------------------------------------------------


def save(res: dict, out: Path, started: float, retrain: bool = False) -> None:
    res["machine"]["uptime_after"] = uptime()
    res["retrain_s" if retrain else "total_s"] = time.perf_counter() - started
    res["slopes"] = slopes(res["sizes"])
    res["targets"] = targets(res["sizes"])
    res["results_file"] = str(out.resolve().relative_to(REPO)) if out.resolve().is_relative_to(REPO) else str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str) + "\n")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        return child_main(*args.child)
    from batchml.localpg import LocalPostgres

    command = shlex.join(["PYTHONPATH=include", ".venv/bin/python", "benchmarks/chain.py",
                          *(sys.argv[1:] if argv is None else argv)])
    evidently = None
    if not args.skip_evidently and not args.retrain:
        from evidently_runner import ensure_env, run_evidently

        ensure_env()  # once, before anything is timed
        evidently = run_evidently
    from feature_job import host_speed

    res = {"command": command,
           "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "spark_master": SPARK_MASTER,
                       "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                       "uptime_before": uptime(),
                       "speed": host_speed()},  # the host's own pace: compare runs of different days with it
           "config": {"use_case": USE_CASE, "as_of": AS_OF.isoformat(), "start": START.isoformat(), "days": DAYS,
                      "drift_start": DRIFT_START.isoformat(), "drift_strength": DRIFT_STRENGTH, "seed": SEED},
           "sizes": []}
    print(f"benchmarks/chain.py: sizes {', '.join(f'{n:,}' for n in args.size_list)}; {uptime()}", flush=True)
    started = time.perf_counter()
    rerun = args.retrain or args.fast_path
    if rerun:
        if not args.out.exists():
            raise SystemExit(f"{args.out}: no results to update; run the full chain first")
        machine = res["machine"]
        res = json.loads(args.out.read_text())
        res["fast_path_command" if args.fast_path else "retrain_command"] = command
        if args.fast_path:
            res["fast_path_machine"] = machine  # this rerun's host probe; res["machine"] stays the full run's
        by_size = {s["customers"]: i for i, s in enumerate(res["sizes"])}
        missing = [c for c in args.size_list if c not in by_size]
        if missing:
            raise SystemExit(f"{args.out} has no figures at {missing}: run the full chain at those sizes first")
    with LocalPostgres() as pg:
        print(f"PostgreSQL at {pg.url}", flush=True)
        for customers in args.size_list:
            if args.retrain:
                i = by_size[customers]
                res["sizes"][i] = retrain_size(args, pg, customers, res["sizes"][i])
            elif args.fast_path:
                i = by_size[customers]
                res["sizes"][i] = fast_path_size(args, pg, customers, res["sizes"][i], evidently)
            else:
                res["sizes"].append(run_size(args, pg, customers, evidently))
            save(res, args.out, started, rerun)  # after every size: a failure at 1M keeps the smaller ones
    report(res)
    if not args.quick and not args.no_charts and args.out.resolve() == RESULTS.resolve():
        import chart

        chart.chain_charts()
    print(f"total {res['retrain_s' if rerun else 'total_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
