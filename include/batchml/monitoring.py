"""Monitoring after each date's scores are published: drift against the scoring version's reference, realized
performance once labels mature, the challenger's evidence, and the retraining policy (check -> decide -> trigger).

The figures of each date go to the warehouse table `<use case>_monitoring` (one row per figure, replaced when the
date is monitored again) and to an HTML drift report (`drift_report`); a retrain request carries its reason and
figures to the training DAG. The statistics themselves are in `drift`, the policy (and its wait for the labels of a
drift) in `retraining`, realized performance per model version in `realized`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path

from batchml import warehouse as wh
from batchml.monitoring_table import (
    history,
    last_retrain_request,
    latest_schedule,
    monitoring_table,
    pending_schedule,
    replace_rows,
    retrain_verdict,
)
from batchml.realized import matured_until as realized_matured
from batchml.realized import realized_by_version, realized_metrics
from batchml.results import (
    ChallengerReview,
    DriftComputed,
    MonitoringPublished,
    RealizedPerformance,
    RetrainDecision,
)
from batchml.retraining import ScheduledRetrain, retrain_decision, retrain_request
from batchml.settings import Settings
from batchml.specs import UseCaseSpec
from batchml.storage import partition_name

log = logging.getLogger(__name__)

__all__ = ["monitoring_table", "realized_metrics", "retrain_decision", "retrain_request", "retrain_verdict"]
# re-exported: the table (monitoring_table), the policy (retraining), realized metrics (realized)



def work_dir(spec: UseCaseSpec, settings: Settings, as_of: dt.date) -> Path:
    return settings.data_root / "monitoring" / spec.name / partition_name(as_of)


def report_path(spec: UseCaseSpec, settings: Settings, as_of: dt.date) -> Path:
    return settings.reports_root / spec.name / "drift" / f"drift_{as_of.isoformat()}.html"


# Steps of the monitoring DAG ---------------------------------------------------------------------------------------


def compute_drift(spec: UseCaseSpec, settings: Settings, as_of: dt.date) -> DriftComputed:
    """Drift of D's features and champion scores against the reference of the version that produced the scores."""
    import pandas as pd
    import pyarrow.parquet as pq

    from batchml import registry
    from batchml.drift import drift_summary, feature_drift, load_reference
    from batchml.score_table import read_scores
    from batchml.storage import feature_partition_file

    folder = work_dir(spec, settings, as_of)
    folder.mkdir(parents=True, exist_ok=True)
    import scipy.stats  # noqa: F401 - imported before the comparison is timed, as Evidently's figure leaves imports out

    seconds: dict[str, float] = {}  # per step, in drift.json: what the comparison itself costs, apart from I/O
    mark = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        seconds[step] = round(now - mark, 3)
        mark = now

    scores = read_scores(wh.engine(settings.warehouse_url), spec.score_table, spec.entity.key, as_of)
    lap("read_scores")
    if scores.empty:
        return DriftComputed(as_of=as_of, skipped=f"no champion scores in {spec.score_table} for {as_of}: "
                                                  f"run {spec.dag_id('scoring')} first")
    versions = sorted(scores.model_version.unique().tolist())
    if len(versions) != 1:
        raise registry.RegistryError(f"{spec.score_table} holds several champion versions for {as_of}: {versions}")
    version = int(versions[0])
    client = registry.connect(settings)
    profile, sample = load_reference(registry.download_reference(client, spec.model_name, version,
                                                                 folder / "reference"))
    lap("read_reference")
    features_file = feature_partition_file(settings.features_root, spec.name, as_of)
    if not features_file.exists():
        raise registry.RegistryError(f"{features_file}: D's feature partition is gone; cannot compare features")
    present = set(pq.read_schema(features_file).names)
    key = spec.entity.key
    current = pd.read_parquet(features_file, columns=[key, *[c for c in profile["features"] if c in present]])
    current = current.merge(scores[[key, "score"]], on=key, how="inner")
    lap("read_features")
    result = feature_drift(spec, profile, sample, current.drop(columns=[key, "score"]), current["score"].to_numpy())
    summary = drift_summary(spec, profile, result)
    lap("compare")
    importance = _importance(spec, settings, version, profile, sample)
    lap("importance")
    details = {"as_of": as_of.isoformat(), "model_version": version, "rows": int(len(current)),
               "figures": result.as_records(), "histograms": result.histograms, "summary": summary,
               "test_metrics": profile["test_metrics"], "reference_rows": profile["rows"],
               "importance": importance, "seconds": seconds,
               "reference_nulls": {f: ref.get("null_share", 0.0) for f, ref in profile["features"].items()}}
    (folder / "drift.json").write_text(json.dumps(details, default=float))
    log.info("Drift on %s (v%s) over %d rows: score PSI %.3f; PSI alerts on %s (seconds: %s)", as_of, version,
             len(current), summary["score_psi"], summary["psi_alert_features"] or "no feature",
             ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    return DriftComputed(as_of=as_of, model_version=version, summary=summary, test_metrics=profile["test_metrics"],
                         drift_file=str(folder / "drift.json"))


def _importance(spec: UseCaseSpec, settings: Settings, version: int, profile: dict, sample) -> list[dict]:
    """Every feature's importance rank: the profile's (older profiles hold the top 20 only), completed from the
    version's own SHAP contributions on the reference sample, computed once per version."""
    from batchml import registry
    from batchml.drift import complete_importance

    stored = profile.get("importance", [])
    if {row["feature"] for row in stored} >= set(profile["features"]):
        return stored
    cache = settings.data_root / "monitoring" / spec.name / f"importance_v{version}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    model = registry.load_batch_model(f"models:/{spec.model_name}/{version}")
    completed = complete_importance(profile, sample, model)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(completed))
    log.info("Importance of v%s completed for %d features beyond the %d stored with it", version,
             len(completed) - len(stored), len(stored))
    return completed


def realized_performance(spec: UseCaseSpec, settings: Settings, as_of: dt.date) -> RealizedPerformance:
    """Metrics of the scores of D - horizon (labels just matured) against actual outcomes, per model role."""
    import numpy as np

    from batchml.datasets import first_outcome_day, label_snapshots
    from batchml.metrics import budget_metrics
    from batchml.score_table import read_scores
    from batchml.storage import Landing

    if spec.horizon_days == 0:
        # a label column of the snapshot is known when scoring: there is no later outcome to measure against
        return RealizedPerformance(
            as_of=as_of, skipped=f"label {spec.label.name!r} is a column of the snapshot, not a later outcome; "
                                 "performance is measured when training (test split and cross-validation)")
    scored_on = as_of - dt.timedelta(days=spec.label.horizon_days)
    eng = wh.engine(settings.warehouse_url)
    landing = Landing(settings.landing_url)
    source = spec.label.source
    first = first_outcome_day(spec, scored_on)
    raw_root = landing.local_view({source: [d for d in landing.landed_days(source, before=as_of) if d >= first]},
                                  settings.staging_root / "landing_mirror")
    roles: dict[str, dict[str, float]] = {}
    labels = None
    for role in ("champion", "challenger"):
        scores = read_scores(eng, spec.score_table, spec.entity.key, scored_on, role)
        if scores.empty:
            continue
        if labels is None:
            labels = label_snapshots(spec, raw_root, [scored_on], as_of)
        y = scores[spec.entity.key].isin(set(labels[spec.entity.key])).to_numpy().astype(int)
        p = scores.score.to_numpy()
        roles[role] = {**realized_metrics(y, p), "model_version": int(scores.model_version.iloc[0])}
        if spec.training.alert_budget is not None:  # how the day's alerts did: recall and precision at the budget
            found = budget_metrics(y, p, np.full(len(y), scored_on.isoformat()), spec.training.alert_budget)
            roles[role].update({k: found[k] for k in ("recall_at_budget", "precision_at_budget")})
    skipped = None if roles else \
        f"no scores on {scored_on} (the newest date whose {spec.label.horizon_days}-day labels matured)"
    since, compared = _since_drift(spec, settings, eng, as_of)
    return RealizedPerformance(as_of=as_of, scored_on=scored_on, roles=roles, skipped=skipped, since_drift=compared,
                               drift_since=since)


SINCE_DRIFT_DAYS = 120
"""The realized comparison since a drift covers at most this many days of scored dates (bounded cost)."""


def _since_drift(spec: UseCaseSpec, settings: Settings, eng, as_of: dt.date) -> tuple[dt.date | None, list[dict]]:
    """Every model version's realized metrics on the matured scored dates since the latest drift was first seen (the
    champion before a drift-triggered retraining and the version it trained, on outcomes after the drift)."""
    from batchml.datasets import first_outcome_day
    from batchml.score_table import scored_dates
    from batchml.storage import Landing

    found = latest_schedule(eng, spec.monitoring_table, as_of)
    if found is None:
        return None, []
    since = found[0].drift_since
    last = realized_matured(spec, as_of)
    days = scored_dates(eng, spec.score_table, max(since, last - dt.timedelta(days=SINCE_DRIFT_DAYS)), last)
    if not days:
        return since, []
    landing = Landing(settings.landing_url)
    source = spec.label.source
    first = first_outcome_day(spec, days[0])
    raw_root = landing.local_view({source: [d for d in landing.landed_days(source, before=as_of) if d >= first]},
                                  settings.staging_root / "landing_mirror")
    return since, realized_by_version(spec, eng, raw_root, days, as_of)


def decide_retrain(spec: UseCaseSpec, settings: Settings, drift: DriftComputed, performance: RealizedPerformance,
                   training_active: bool) -> RetrainDecision:
    """Check the figures against the policy, apply the cool-down and the active-training rule, schedule a drift's
    retraining for when its labels mature, and request a schedule that is due (see `retraining`)."""
    eng = wh.engine(settings.warehouse_url)
    last = last_retrain_request(eng, spec.monitoring_table, drift.as_of)
    pending = pending_schedule(eng, spec.monitoring_table, drift.as_of)
    decision = retrain_decision(spec, drift.as_of, drift.summary or None, performance.roles.get("champion"),
                                drift.test_metrics, last, training_active, data_ok=not drift.skipped, pending=pending)
    outcome = ("REQUEST for " + str(decision.training_date) if decision.request else
               f"scheduled for {decision.scheduled_for}" if decision.scheduled_for else "no request")
    log.info("Retraining decision for %s: %s %s", drift.as_of, outcome,
             decision.reasons + ([f"suppressed: {decision.suppressed}"] if decision.suppressed else []))
    return decision


def review_challenger(spec: UseCaseSpec, settings: Settings, performance: RealizedPerformance,
                      airflow_run_id: str) -> ChallengerReview:
    """Promote (or recommend) the shadow challenger when it beats the champion on matured outcomes."""
    from batchml import gate, registry

    cfg = spec.monitoring.challenger
    champ, chall = performance.roles.get("champion"), performance.roles.get("challenger")
    if not champ or not chall or "roc_auc" not in champ or "roc_auc" not in chall:
        return ChallengerReview(action="none", reason="no matured shadow scores to compare")
    if chall["rows"] < cfg.min_labelled_rows:
        return ChallengerReview(action="none", reason=f"{int(chall['rows'])} labelled rows < {cfg.min_labelled_rows}")
    gain = chall["roc_auc"] - champ["roc_auc"]
    if gain < cfg.margin:
        return ChallengerReview(action="none", reason=f"challenger ROC AUC {chall['roc_auc']:.3f} does not beat the "
                                                      f"champion's {champ['roc_auc']:.3f} by {cfg.margin}")
    challenger, champion = int(chall["model_version"]), int(champ["model_version"])
    reasons = [f"challenger v{challenger} ROC AUC {chall['roc_auc']:.4f} beats champion v{champion} "
               f"{champ['roc_auc']:.4f} by {gain:.4f} on {int(chall['rows'])} matured rows "
               f"(scored {performance.scored_on})"]
    event, previous = "promotion_recommended", champion
    if cfg.action == "promote":
        previous = registry.promote(registry.connect(settings), spec.model_name, challenger)
        event = "promoted_on_evidence"
    gate.record_event(wh.engine(settings.warehouse_url), use_case=spec.name, model_name=spec.model_name,
                      model_version=challenger, event=event, reasons=reasons,
                      metrics={"challenger": chall, "champion": champ}, previous_champion=previous,
                      actor="monitoring", airflow_run_id=airflow_run_id)
    log.info("%s: %s", event, reasons[0])
    return ChallengerReview(action=event, reason=reasons[0])


def _figure_rows(drift: DriftComputed, details: dict, performance: RealizedPerformance,
                 decision: RetrainDecision) -> list[dict]:
    """One date's monitoring figures as rows of the monitoring table."""
    rows: list[dict] = []
    if drift.skipped:
        rows.append({"metric": "drift", "status": "skipped", "detail": drift.skipped})
    rows += [{**f, "model_version": drift.model_version} for f in details.get("figures", [])]
    for role, metrics in performance.roles.items():
        for name in ("roc_auc", "pr_auc", "calibration_error", "top_decile_capture", "rows", "positives",
                     "label_rate", "recall_at_budget", "precision_at_budget"):
            if name in metrics:
                rows.append({"model_role": role, "model_version": metrics["model_version"],
                             "metric": f"realized_{name}", "value": metrics[name], "status": "info",
                             "detail": f"scores of {performance.scored_on}"})
    if performance.skipped:
        rows.append({"metric": "realized_performance", "status": "skipped", "detail": performance.skipped})
    for entry in performance.since_drift:
        if "roc_auc" in entry:
            rows.append({"model_role": "/".join(entry["roles"]), "model_version": entry["model_version"],
                         "metric": f"realized_roc_auc_since_drift_{entry['scope']}", "value": entry["roc_auc"],
                         "status": "info", "detail": f"scores of {entry['first_day']}..{entry['last_day']} "
                                                     f"({entry['days']} dates, {int(entry['rows'])} rows); drift "
                                                     f"first seen {performance.drift_since}"})
    status = ("requested" if decision.request else "scheduled" if decision.scheduled_for else
              "suppressed" if decision.suppressed else "ok")
    reasons = decision.reasons + ([f"suppressed: {decision.suppressed}"] if decision.suppressed else [])
    rows.append({"model_version": drift.model_version, "metric": "retrain_request",
                 "value": 1.0 if decision.request else 0.0, "status": status,
                 "detail": "; ".join(reasons) or "no trigger"})
    schedule_date = decision.scheduled_for or (decision.training_date if decision.drift_since else None)
    if schedule_date and decision.drift_since:
        delay = decision.figures.get("label_delay", {})
        schedule = ScheduledRetrain(schedule_date, decision.drift_since,
                                    dt.date.fromisoformat(delay.get("scheduled_on", drift.as_of.isoformat())))
        rows.append({"model_version": drift.model_version, "metric": "retrain_scheduled",
                     "value": float((schedule_date - drift.as_of).days),
                     "status": "scheduled" if decision.scheduled_for else "requested",
                     "detail": schedule.detail(int(delay.get("horizon_days", 0)))})
    for row in rows:
        row.setdefault("model_role", "champion")
    return rows


HISTORY_DAYS = 30
"""Days of monitoring figures the drift report charts."""
HISTORY_FEATURES = 5
"""Features charted: the most drifted ones today and the most important ones, this many of each at most."""


def publish_monitoring(spec: UseCaseSpec, settings: Settings, drift: DriftComputed, performance: RealizedPerformance,
                       decision: RetrainDecision, airflow_run_id: str) -> MonitoringPublished:
    """Write D's figures to the monitoring table (replacing a re-run's) and render the HTML drift report."""
    from batchml.drift_report import render_drift_report

    details = json.loads(Path(drift.drift_file).read_text()) if drift.drift_file else {}
    rows = [{**row, "airflow_run_id": airflow_run_id} for row in _figure_rows(drift, details, performance, decision)]
    eng = wh.engine(settings.warehouse_url)
    written = replace_rows(eng, spec.monitoring_table, drift.as_of, rows)
    report = None
    if details:
        top = [row["feature"] for row in details.get("importance", [])[:HISTORY_FEATURES]]
        drifted = details.get("summary", {}).get("psi_alert_features", [])[:HISTORY_FEATURES]
        past = history(eng, spec.monitoring_table, drift.as_of, HISTORY_DAYS, list(dict.fromkeys(drifted + top)))
        report = str(render_drift_report(spec, details, performance, decision,
                                         work_dir(spec, settings, drift.as_of) / "plots",
                                         report_path(spec, settings, drift.as_of), past))
    status = next(r["status"] for r in rows if r["metric"] == "retrain_request")
    return MonitoringPublished(as_of=drift.as_of, rows=written, alerts=sum(r.get("status") == "alert" for r in rows),
                               report=report, retrain=status)
