"""The training DAG of a use case (`<name>__training`) and its model-admin DAG (`<name>__model_admin`).

Training, for training date T (logical date, or the `training_date` param):
  ensure_feature_snapshots -> build_training_set -> train_candidates -> evaluate -> register_and_gate
Large objects (training sets, fitted models, plots) stay in the run folder `<data_root>/training/<name>/<run>/`;
tasks pass that folder's path. The registry is touched only by the last task, so a failure anywhere before it leaves
the registry unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

from batchml.settings import REPO_ROOT, Settings
from batchml.specs import UseCaseSpec

log = logging.getLogger(__name__)


def run_dir(spec: UseCaseSpec, settings: Settings, label: str) -> Path:
    return settings.data_root / "training" / spec.name / label


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


# Steps -----------------------------------------------------------------------------------------------------------


def ensure_snapshots(spark, spec: UseCaseSpec, settings: Settings, training_date: dt.date, label: str) -> dict:
    """Build, validate and publish every planned snapshot's feature partition that is missing (same steps as the
    feature DAG, in one Spark session); existing partitions are left as they are."""
    from batchml.pipelines import features as feature_steps
    from batchml.storage import DATA_FILE, feature_partition_dir
    from batchml.training import SPLITS, snapshot_plan

    plan = snapshot_plan(spec, training_date)
    snapshots = sorted({s for name in SPLITS for s in plan[name]})
    missing = [s for s in snapshots
               if not (feature_partition_dir(settings.features_root, spec.name, s) / DATA_FILE).exists()]
    for i, as_of in enumerate(missing, start=1):
        started = time.perf_counter()
        ref = feature_steps.check_landed(spec, settings, as_of)
        ref = feature_steps.validate_raw(spec, settings, ref, label)
        ref = feature_steps.build(spark, spec, settings, ref, label)
        ref = feature_steps.validate_features(spec, settings, ref, label)
        feature_steps.publish(spec, settings, ref, label)
        log.info("Snapshot %d/%d (%s) built and published in %.0f s", i, len(missing), as_of, time.perf_counter() - started)
    return {"training_date": training_date.isoformat(), "snapshots": [s.isoformat() for s in snapshots],
            "built": [s.isoformat() for s in missing]}


def build_training_set(spec: UseCaseSpec, settings: Settings, training_date: dt.date, folder: Path) -> dict:
    """Join snapshots with matured labels, check them, split by time, save to the run folder."""
    from batchml.storage import Landing
    from batchml.training import build_training_set as build

    landing = Landing(settings.landing_url)
    # labels come from the label events, or from the snapshot itself (a label column)
    label_source = spec.entity.source if spec.horizon_days == 0 else spec.label.source
    days = {label_source: landing.landed_days(label_source, before=training_date)}
    raw_root = landing.local_view(days, settings.staging_root / "landing_mirror")
    ts = build(spec, settings.features_root, raw_root, training_date)
    ts.save(folder / "data")
    return {"run_dir": str(folder), **ts.lineage}


def train_candidates(spec: UseCaseSpec, settings: Settings, ref: dict, trials: int | None, timeout: int | None) -> dict:
    """Tune every candidate within the budget, pick the best on validation, calibrate it; models saved to disk."""
    import joblib

    from batchml.training import TrainingSet, better, calibrate, tune_candidate

    folder = Path(ref["run_dir"])
    ts = TrainingSet.load(folder / "data")
    metric = spec.training.tuning.metric
    results = []
    for i, cand in enumerate(spec.training.candidates, start=1):
        log.info("Tuning candidate %d/%d: %s (%s)", i, len(spec.training.candidates), cand.name, cand.kind)
        tuned = tune_candidate(cand, ts, spec, trials=trials, timeout=timeout)
        joblib.dump(tuned.model, folder / f"candidate_{cand.name}.joblib")
        results.append({"name": cand.name, "kind": cand.kind, "valid_score": tuned.valid_score,
                        "trials": len(tuned.trials), "seconds": round(tuned.seconds, 1),
                        "params": tuned.model.info["params"], "history": tuned.trials})
    best = results[0]
    for r in results[1:]:
        if better(metric, r["valid_score"], best["valid_score"]):
            best = r
    model = joblib.load(folder / f"candidate_{best['name']}.joblib")
    model = calibrate(model, ts, spec.training.calibration)
    joblib.dump(model, folder / "selected.joblib")
    summary = {"selected": best["name"], "metric": metric, "candidates": results}
    _write_json(folder / "candidates.json", summary)
    log.info("Selected %s (validation %s %.4f)", best["name"], metric, best["valid_score"])
    return {**ref, "selected": best["name"], "valid_score": best["valid_score"]}


def evaluate(spec: UseCaseSpec, settings: Settings, ref: dict) -> dict:
    """Test-window metrics of every candidate, calibration, lift, segments, and SHAP of the selected model."""
    import joblib

    from batchml import evaluation as ev
    from batchml.training import TrainingSet

    folder = Path(ref["run_dir"])
    plots_dir = folder / "plots"
    ts = TrainingSet.load(folder / "data")
    y, test = ts.y("test"), ts.frames["test"]
    selected = joblib.load(folder / "selected.joblib")
    p = selected.predict_proba(test)
    summary = _read_json(folder / "candidates.json")
    scores = {}
    for cand in summary["candidates"]:
        model = joblib.load(folder / f"candidate_{cand['name']}.joblib")
        cand_p = p if cand["name"] == summary["selected"] else model.predict_proba(test)
        cand["test"] = ev.metrics(y, cand_p)
        scores[cand["name"]] = cand_p
    baseline = next(c for c in summary["candidates"] if c["name"] == spec.training.baseline)
    test_metrics = ev.metrics(y, p)
    deciles = ev.decile_table(y, p)
    plots = {}
    plots.update(ev.plot_curves(y, scores, plots_dir))
    plots.update(ev.plot_calibration(y, p, plots_dir))
    plots.update(ev.plot_lift(deciles, plots_dir))
    started = time.perf_counter()
    explanation = ev.explain(selected, test, plots_dir, spec.training.shap_sample)
    plots.update(explanation.plots)
    shap_seconds = time.perf_counter() - started
    cross_validation = {}
    if spec.training.cv_folds >= 2:
        from batchml.training import cross_validate

        by_name = {c.name: c for c in spec.training.candidates}
        for name in dict.fromkeys([summary["selected"], spec.training.baseline]):
            info = joblib.load(folder / f"candidate_{name}.joblib").info
            cross_validation[name] = cross_validate(by_name[name], info, ts, spec.training.cv_folds,
                                                    spec.training.tuning.seed)
    result = {
        "selected": summary["selected"],
        "test_metrics": test_metrics,
        "baseline": {"name": baseline["name"], "test_metrics": baseline["test"]},
        "ece": ev.expected_calibration_error(y, p),
        "deciles": deciles.to_dict("records"),
        "segments": ev.segment_table(test, y, p, spec.training.segments).to_dict("records"),
        "shap_importance": explanation.importance.head(20).to_dict("records"),
        "shap_examples": explanation.examples,
        "shap_seconds": round(shap_seconds, 1),
        "cross_validation": cross_validation,
        "shap_rows": min(spec.training.shap_sample, len(test)),
        "plots": {k: str(v) for k, v in plots.items()},
        "selected_info": selected.info,
    }
    # the reference monitoring compares against: the test window's features and scores, stored with the version
    from batchml.monitoring import build_profile, save_reference

    profile, sample = build_profile(test[ts.features], ts.categorical, p, result["shap_importance"], test_metrics)
    save_reference(folder / "reference", profile, sample)
    _write_json(folder / "candidates.json", summary)
    _write_json(folder / "evaluation.json", result)
    log.info("Test window: %s %.4f (baseline %.4f)", "roc_auc", test_metrics["roc_auc"],
             baseline["test"]["roc_auc"])
    return {**ref, "test_roc_auc": test_metrics["roc_auc"], "baseline_test_roc_auc": baseline["test"]["roc_auc"]}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def register_and_gate(spec: UseCaseSpec, settings: Settings, ref: dict, airflow_run_id: str,
                      request: dict | None = None) -> dict:
    """Log the run to MLflow, register the model, compare with the champion on the same test window, move the
    aliases as the gate decides, render the model card, and record the decision."""
    import joblib
    import mlflow

    from batchml import evaluation as ev
    from batchml import registry, warehouse
    from batchml.training import TrainingSet

    folder = Path(ref["run_dir"])
    ts = TrainingSet.load(folder / "data")
    evaluation = _read_json(folder / "evaluation.json")
    summary = _read_json(folder / "candidates.json")
    model = joblib.load(folder / "selected.joblib")
    request = request or {}
    client = registry.connect(settings)
    experiment_id = registry.ensure_experiment(client, spec, settings)
    model_name = spec.model_name
    engine = warehouse.create_engine(settings.warehouse_url)
    warehouse.migrate(engine)

    # Score the current champion on this run's test window, so the gate compares like with like.
    champion_version = registry.alias_version(client, model_name, registry.CHAMPION)
    champion_metrics = None
    if champion_version is not None:
        try:
            champ = registry.load_batch_model(f"models:/{model_name}/{champion_version}")
            champion_metrics = ev.metrics(ts.y("test"), champ.predict_proba(ts.frames["test"]))
        except Exception as exc:  # a champion trained on other features cannot be compared
            log.warning("Champion v%s cannot score this test window: %s", champion_version, exc)
            champion_metrics = None
    decision = registry.decide(spec, evaluation["test_metrics"], champion_metrics, champion_version)
    if champion_version is not None and champion_metrics is None:
        decision.verdict = "challenger" if decision.verdict == "champion" else decision.verdict
        decision.reasons.append(f"champion v{champion_version} could not be scored on this test window: "
                                "promote manually with the model_admin DAG if intended")

    lineage = ts.lineage
    tags = {
        "batchml.use_case": spec.name,
        "batchml.airflow_run_id": airflow_run_id,
        "batchml.git_commit": git_commit(),
        "batchml.spec_sha256": spec.sha256,
        "batchml.data_hash": lineage["data_hash"],
        "batchml.training_date": lineage["training_date"],
        "batchml.selected": summary["selected"],
        "batchml.trigger": request.get("trigger", "schedule_or_manual"),
    }
    if request.get("reason"):
        tags["batchml.reason"] = str(request["reason"])[:4000]
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{spec.name}-{lineage['training_date']}",
                          tags=tags) as run:
        mlflow.log_params({"candidate": summary["selected"], "kind": model.kind,
                           "calibration": model.info.get("calibration"),
                           **{f"param.{k}": v for k, v in model.info.get("params", {}).items()},
                           "best_iteration": model.info.get("best_iteration"),
                           "training_date": lineage["training_date"],
                           **{f"rows.{k}": v for k, v in lineage["rows"].items()}})
        mlflow.log_metrics({f"test_{k}": v for k, v in evaluation["test_metrics"].items()})
        mlflow.log_metrics({f"baseline_test_{k}": v for k, v in evaluation["baseline"]["test_metrics"].items()})
        for name, cv in evaluation.get("cross_validation", {}).items():
            role = "cv" if name == summary["selected"] else f"{name}_cv"
            mlflow.log_metrics({f"{role}_{m}": cv[m] for m in ("roc_auc", "roc_auc_std", "pr_auc", "brier")})
        mlflow.log_metrics({f"valid_{summary['metric']}": ref["valid_score"],
                            **{f"label_rate_{k}": v for k, v in lineage["label_rate"].items()}})
        if request.get("figures"):
            mlflow.log_dict(request["figures"], "retrain_request.json")
        mlflow.log_dict(lineage, "lineage.json")
        mlflow.log_dict(summary, "candidates.json")
        mlflow.log_artifacts(str(folder / "plots"), "plots")
        mlflow.log_artifacts(str(folder / "reference"), "reference")
        model_uri = registry.log_batch_model(model, ts.frames["test"])
        version = int(mlflow.register_model(model_uri, model_name, tags={"batchml.airflow_run_id": airflow_run_id}).version)
        previous = registry.apply_decision(client, model_name, version, decision)
        card = _model_card(spec, model_name, version, decision, evaluation, summary, ts, tags, run.info.run_id)
        mlflow.log_artifact(str(card))
        mlflow.set_tags({"batchml.gate_verdict": decision.verdict, "batchml.model_version": version})

    registry.tag_version(client, model_name, version, {
        "gate.verdict": decision.verdict, "gate.mode": decision.mode, "gate.reasons": " | ".join(decision.reasons),
        "data_hash": lineage["data_hash"], "training_date": lineage["training_date"]})
    event = {"champion": "promoted", "challenger": "challenger", "rejected": "rejected"}[decision.verdict]
    if decision.mode == "dry_run":
        event = f"dry_run_{event}"
    warehouse.record_registry_event(
        engine, use_case=spec.name, model_name=model_name, model_version=version, event=event,
        reasons=decision.reasons, metrics={"candidate": decision.candidate_metrics, "champion": decision.champion_metrics},
        previous_champion=previous, actor=request.get("trigger", "airflow"), airflow_run_id=airflow_run_id,
        mlflow_run_id=run.info.run_id,
    )
    reports = settings.reports_root / spec.name / "model_cards"
    reports.mkdir(parents=True, exist_ok=True)
    published_card = reports / f"{model_name}_v{version}.html"
    published_card.write_bytes(card.read_bytes())
    log.info("Gate verdict for %s v%s: %s\n  %s", model_name, version, decision.verdict, "\n  ".join(decision.reasons))
    return {"model_name": model_name, "version": version, "verdict": decision.verdict, "reasons": decision.reasons,
            "previous_champion": previous, "mlflow_run_id": run.info.run_id, "model_card": str(published_card),
            "test_roc_auc": evaluation["test_metrics"]["roc_auc"],
            "baseline_test_roc_auc": evaluation["baseline"]["test_metrics"]["roc_auc"]}


def _model_card(spec, model_name, version, decision, evaluation, summary, ts, tags, mlflow_run_id) -> Path:
    from batchml import evaluation as ev

    plots = {k: Path(v) for k, v in evaluation["plots"].items()}
    comparison = [{"name": f"new model ({summary['selected']})", "metrics": evaluation["test_metrics"]},
                  {"name": f"baseline ({evaluation['baseline']['name']}, logistic regression)",
                   "metrics": evaluation["baseline"]["test_metrics"]}]
    if decision.champion_metrics:
        comparison.append({"name": f"current champion v{decision.champion_version}", "metrics": decision.champion_metrics})
    info = evaluation["selected_info"]
    context = {
        "use_case": spec.name, "description": spec.description, "model_name": model_name, "version": version,
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "decision": decision.as_dict(),
        "champion": {"candidate": summary["selected"], "kind": info.get("kind"),
                     "calibration": info.get("calibration", "none")},
        "metric_names": ["roc_auc", "pr_auc", "log_loss", "brier", "top_decile_capture"],
        "comparison": comparison, "test_metrics": evaluation["test_metrics"], "ece": evaluation["ece"],
        "deciles": evaluation["deciles"], "segments": evaluation["segments"],
        "shap_explainer": "shap.LinearExplainer" if info.get("kind") == "logistic_regression" else "shap.TreeExplainer",
        "shap_rows": evaluation["shap_rows"],
        "dependence_plots": sorted(k for k in plots if k.startswith("shap_dependence")),
        "examples": evaluation["shap_examples"],
        "tuning_metric": summary["metric"],
        "candidates": [{"name": c["name"], "kind": c["kind"], "trials": c["trials"], "seconds": c["seconds"],
                        "valid_score": c["valid_score"], "test_roc_auc": c["test"]["roc_auc"],
                        "params": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in c["params"].items()},
                        "selected": c["name"] == summary["selected"]} for c in summary["candidates"]],
        "lineage": ts.lineage,
        "provenance": {"data hash": ts.lineage["data_hash"], "spec sha256": tags["batchml.spec_sha256"],
                       "git commit": tags["batchml.git_commit"], "Airflow run": tags["batchml.airflow_run_id"],
                       "MLflow run": mlflow_run_id, "trigger": tags["batchml.trigger"],
                       **({"reason": tags["batchml.reason"]} if "batchml.reason" in tags else {})},
        "label_text": _label_text(spec),
        "cross_validation": [{"name": name, "selected": name == summary["selected"], **cv}
                             for name, cv in evaluation.get("cross_validation", {}).items()],
        "feature_count": len(ts.features), "categorical": ts.categorical,
    }
    return ev.render_model_card(context, plots, Path(evaluation["plots"]["curves"]).parents[1] / "model_card.html")


def _label_text(spec: UseCaseSpec) -> str:
    label = spec.label
    if spec.horizon_days == 0:
        return (f"{label.name} = column {label.column!r} of {spec.entity.source} equals {label.positive!r}; "
                f"rows split at random (stratified, seed {spec.training.split.seed})")
    return f"{label.name} = an event in {label.source} within {label.horizon_days} days after the snapshot date"


def admin_action(spec: UseCaseSpec, settings: Settings, action: str, version: int | None, reason: str,
                 actor: str, airflow_run_id: str) -> dict:
    """Promote a given version to champion, or roll back to the previous champion; recorded like the gate."""
    from batchml import registry, warehouse

    if not reason or len(reason.strip()) < 3:
        raise registry.RegistryError("say why in the `reason` param (it is recorded with the change)")
    client = registry.connect(settings)
    engine = warehouse.create_engine(settings.warehouse_url)
    model_name = spec.model_name
    if action == "promote":
        if version is None:
            raise registry.RegistryError("action=promote needs the `version` param")
        target, event = int(version), "promoted_manually"
    elif action == "rollback":
        current = registry.alias_version(client, model_name, registry.CHAMPION)
        target, event = registry.rollback_target(warehouse.registry_events(engine, model_name), current), "rolled_back"
    else:
        raise registry.RegistryError(f"unknown action {action!r}; valid actions: promote, rollback")
    previous = registry.promote(client, model_name, target)
    reasons = [f"{action} by {actor}: {reason.strip()}", f"champion v{previous} -> v{target}"]
    registry.tag_version(client, model_name, target, {"admin.last_action": f"{event}: {reason.strip()}"})
    warehouse.record_registry_event(engine, use_case=spec.name, model_name=model_name, model_version=target,
                                    event=event, reasons=reasons, previous_champion=previous, actor=actor,
                                    airflow_run_id=airflow_run_id)
    log.info("%s: champion of %s is now v%s (was v%s)", event, model_name, target, previous)
    return {"model_name": model_name, "champion": target, "previous_champion": previous, "event": event}


def training_request(context) -> dict:
    """Why and for which date a training run happens: a retrain-request asset event, else the run's params."""
    from batchml.pipelines.common import resolve_as_of

    params = dict(context.get("params") or {})
    request = {"trigger": params.get("trigger") or "schedule_or_manual", "reason": params.get("reason") or "",
               "figures": params.get("figures"),
               "training_date": resolve_as_of(context, param="training_date").isoformat()}
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:  # the newest request wins
            extra = dict(event.extra or {})
            if extra.get("training_date"):
                request.update({k: extra[k] for k in ("trigger", "reason", "figures", "training_date") if k in extra})
    return request


# Wiring ----------------------------------------------------------------------------------------------------------

_TRAINING_DOC = """
For the training date **T** (logical date, or the `training_date` param):

{steps}
3. `train_candidates`: {candidates}, tuned with Optuna ({trials} trials / {timeout} s per candidate).
4. `evaluate_models`: test-window metrics, calibration, lift, segments, SHAP.
5. `register_and_gate`: MLflow run + registered version; champion only if it clears {floors} and beats the champion
   by {margin} {metric} on the same test window; model card written and logged.

Runs on its schedule, on demand, and when `{name}__monitoring` emits a `{name}.retrain_request` asset event (whose
reason and figures end up on the MLflow run).

Params: `training_date`, `trials`, `timeout_seconds`, `reason` (recorded on the MLflow run).
"""


def build_training_dag(spec: UseCaseSpec, settings: Settings):
    from airflow.sdk import Asset, Param, dag, get_current_context, task

    from batchml.pipelines.common import assets_or_cron, dag_args, fail_fast, run_label
    from batchml.pipelines.monitoring import retrain_request_asset

    tr = spec.training
    if tr.split.kind == "random":
        steps = (f"1. `ensure_feature_snapshots`: the feature partition of T exists (built from the newest snapshot "
                 f"landed before T).\n2. `build_training_set`: its rows with the label column, split at random, "
                 f"stratified (seed {tr.split.seed}): {tr.split.validation:.0%} validation, {tr.split.test:.0%} test.")
    else:
        steps = (f"1. `ensure_feature_snapshots`: the planned snapshots (every {tr.split.every_days} days, the newest "
                 f"T-{spec.horizon_days}d) have feature\n   partitions; missing ones are built, checked and published "
                 f"like the feature DAG does.\n2. `build_training_set`: snapshots joined with labels matured before T; "
                 f"split by time\n   ({tr.split.train} train / {tr.split.validation} validation / {tr.split.test} test "
                 f"snapshots, purged: {tr.split.purge}).")
    doc = _TRAINING_DOC.format(
        steps=steps, candidates=", ".join(f"{c.name} ({c.kind})" for c in tr.candidates),
        trials=tr.tuning.trials, timeout=tr.tuning.timeout_seconds, floors=tr.gate.floors, margin=tr.gate.margin,
        metric=tr.gate.metric, name=spec.name)
    model_asset = Asset(name=f"{spec.name}.model")
    # weekly (or as the spec says), and whenever monitoring requests a retrain
    schedule = assets_or_cron(retrain_request_asset(spec), tr.schedule)

    @dag(**dag_args(
        spec, "training", doc, schedule, max_active_runs=1,
        params={
            "training_date": Param(None, type=["null", "string"], format="date",
                                   description="Training date T (YYYY-MM-DD). Empty: the run's logical date."),
            "trials": Param(None, type=["null", "integer"], minimum=1, maximum=1000,
                            description=f"Tuning trials per candidate. Empty: the spec's {tr.tuning.trials}."),
            "timeout_seconds": Param(None, type=["null", "integer"], minimum=1, maximum=86400,
                                     description="Tuning seconds per candidate. Empty: the spec's budget."),
            "reason": Param("", type="string", maxLength=2000, description="Why this run (recorded in MLflow)."),
            "trigger": Param("schedule_or_manual", type="string", enum=["schedule_or_manual", "drift", "decay"],
                             description="Set by the monitoring DAG when it requests a retrain."),
            "figures": Param(None, type=["null", "object"], description="Monitoring figures behind a retrain request."),
        },
    ))
    def training_dag():
        @task.pyspark(conn_id=settings.spark_conn_id)
        @fail_fast
        def ensure_feature_snapshots(spark=None) -> dict:
            context = get_current_context()
            spark.sparkContext.setLogLevel("WARN")
            day = dt.date.fromisoformat(training_request(context)["training_date"])
            return ensure_snapshots(spark, spec, settings, day, run_label(context))

        @task(task_id="build_training_set")
        @fail_fast
        def build_training_set_task(ref: dict) -> dict:
            context = get_current_context()
            day = dt.date.fromisoformat(ref["training_date"])
            return build_training_set(spec, settings, day, run_dir(spec, settings, run_label(context)))

        @task(task_id="train_candidates")
        @fail_fast
        def train_candidates_task(ref: dict) -> dict:
            params = get_current_context()["params"]
            return train_candidates(spec, settings, ref, params.get("trials"), params.get("timeout_seconds"))

        @task
        @fail_fast
        def evaluate_models(ref: dict) -> dict:
            return evaluate(spec, settings, ref)

        @task(task_id="register_and_gate", outlets=[model_asset])
        @fail_fast
        def register_and_gate_task(ref: dict) -> dict:
            context = get_current_context()
            result = register_and_gate(spec, settings, ref, str(context["run_id"]), training_request(context))
            context["outlet_events"][model_asset].extra = {k: result[k] for k in ("model_name", "version", "verdict")}
            return result

        register_and_gate_task(evaluate_models(train_candidates_task(build_training_set_task(ensure_feature_snapshots()))))

    return training_dag()


def build_model_admin_dag(spec: UseCaseSpec, settings: Settings):
    from airflow.sdk import Param, dag, get_current_context, task

    from batchml.pipelines.common import dag_args, default_args, fail_fast

    doc = """
Manual model administration, recorded in `model_registry_events` like the gate's decisions:

* `action=promote`, `version=N`: make version N the champion.
* `action=rollback`: give the champion alias back to the previous champion.

Trigger it from the UI with the params (a `reason` is required).
"""

    @dag(**dag_args(
        spec, "model_admin", doc, None, max_active_runs=1, default_args={**default_args(spec), "retries": 0},
        params={
            "action": Param("promote", type="string", enum=["promote", "rollback"]),
            "version": Param(None, type=["null", "integer"], minimum=1, description="Version to promote."),
            "reason": Param("", type="string", minLength=3, maxLength=2000, description="Why (recorded)."),
        },
    ))
    def model_admin_dag():
        @task
        @fail_fast
        def apply_admin_action() -> dict:
            context = get_current_context()
            params = context["params"]
            actor = getattr(context["dag_run"], "triggering_user_name", None) or "airflow"
            return admin_action(spec, settings, params["action"], params.get("version"), params.get("reason", ""),
                                str(actor), str(context["run_id"]))

        apply_admin_action()

    return model_admin_dag()


def training_dags() -> dict[str, object]:
    from batchml.pipelines.common import load_all

    settings, specs = load_all()
    return {spec.dag_id("training"): build_training_dag(spec, settings) for spec in specs}


def model_admin_dags() -> dict[str, object]:
    from batchml.pipelines.common import load_all

    settings, specs = load_all()
    return {spec.dag_id("model_admin"): build_model_admin_dag(spec, settings) for spec in specs}
