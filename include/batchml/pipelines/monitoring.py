"""The monitoring DAG of a use case (`<name>__monitoring`), for date D, after D's scores are published:

  compute_drift ─┐
                 ├─> decide_retrain -> publish_monitoring -> request_retrain
  realized_performance ─┴─> review_challenger

Check -> decide -> trigger: drift of D's features and scores against the reference of the version that scored
them, realized performance on the newest date whose labels have matured, a retraining policy with a cool-down,
and a retrain-request asset event, carrying the reason and the figures, that the training DAG is scheduled on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

from batchml.settings import Settings
from batchml.specs import UseCaseSpec

log = logging.getLogger(__name__)


def work_dir(spec: UseCaseSpec, settings: Settings, as_of: dt.date) -> Path:
    from batchml.storage import partition_name

    return settings.data_root / "monitoring" / spec.name / partition_name(as_of)


def report_path(spec: UseCaseSpec, settings: Settings, as_of: dt.date) -> Path:
    return settings.reports_root / spec.name / "drift" / f"drift_{as_of.isoformat()}.html"


# Steps -----------------------------------------------------------------------------------------------------------


def compute_drift(spec: UseCaseSpec, settings: Settings, as_of: dt.date) -> dict:
    """Drift of D's features and champion scores against the reference of the version that produced the scores."""
    import pandas as pd

    from batchml import registry
    from batchml import warehouse as wh
    from batchml.monitoring import drift_summary, feature_drift, load_reference
    from batchml.storage import feature_partition_file

    folder = work_dir(spec, settings, as_of)
    folder.mkdir(parents=True, exist_ok=True)
    engine = wh.create_engine(settings.warehouse_url)
    scores = wh.read_scores(engine, spec.score_table, spec.entity.key, as_of)
    if scores.empty:
        out = {"as_of": as_of.isoformat(), "skipped": f"no champion scores in {spec.score_table} for {as_of}: "
                                                      f"run {spec.dag_id('scoring')} first"}
        (folder / "drift.json").write_text(json.dumps(out))
        return out
    versions = sorted(scores.model_version.unique().tolist())
    if len(versions) != 1:
        raise registry.RegistryError(f"{spec.score_table} holds several champion versions for {as_of}: {versions}")
    version = int(versions[0])
    client = registry.connect(settings)
    reference_dir = registry.download_reference(client, spec.model_name, version, folder / "reference")
    profile, sample = load_reference(reference_dir)
    features_file = feature_partition_file(settings.features_root, spec.name, as_of)
    if not features_file.exists():
        raise registry.RegistryError(f"{features_file}: D's feature partition is gone; cannot compare features")
    present = set(_columns_of(features_file))
    current = pd.read_parquet(features_file, columns=[spec.entity.key, *[c for c in profile["features"] if c in present]])
    current = current.merge(scores[[spec.entity.key, "score"]], on=spec.entity.key, how="inner")
    result = feature_drift(spec, profile, sample, current.drop(columns=[spec.entity.key, "score"]),
                           current["score"].to_numpy())
    summary = drift_summary(spec, profile, result)
    out = {"as_of": as_of.isoformat(), "model_version": version, "rows": int(len(current)),
           "figures": result.as_records(), "histograms": result.histograms, "summary": summary,
           "test_metrics": profile["test_metrics"], "importance": profile.get("importance", []),
           "reference_rows": profile["rows"]}
    (folder / "drift.json").write_text(json.dumps(out, default=float))
    log.info("Drift on %s (v%s): score PSI %.3f; PSI alerts on %s", as_of, version, summary["score_psi"],
             summary["psi_alert_features"] or "no feature")
    return {"as_of": as_of.isoformat(), "model_version": version, "summary": summary,
            "test_metrics": profile["test_metrics"], "drift_file": str(folder / "drift.json")}


def _columns_of(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_schema(path).names


def realized_performance(spec: UseCaseSpec, settings: Settings, as_of: dt.date) -> dict:
    """Metrics of the scores of D - horizon (labels just matured) against actual outcomes, per model role."""
    from batchml import warehouse as wh
    from batchml.monitoring import realized_metrics
    from batchml.storage import Landing
    from batchml.training import label_snapshots

    if spec.horizon_days == 0:
        # a label column of the snapshot is known when scoring: there is no later outcome to measure against
        return {"as_of": as_of.isoformat(), "roles": {},
                "skipped": f"label {spec.label.name!r} is a column of the snapshot, not a later outcome; "
                           "performance is measured when training (test split and cross-validation)"}
    scored_on = as_of - dt.timedelta(days=spec.label.horizon_days)
    engine = wh.create_engine(settings.warehouse_url)
    landing = Landing(settings.landing_url)
    source = spec.label.source
    raw_root = landing.local_view({source: [d for d in landing.landed_days(source, before=as_of) if d >= scored_on]},
                                  settings.staging_root / "landing_mirror")
    out: dict = {"as_of": as_of.isoformat(), "scored_on": scored_on.isoformat(), "roles": {}}
    labels = None
    for role in ("champion", "challenger"):
        scores = wh.read_scores(engine, spec.score_table, spec.entity.key, scored_on, role)
        if scores.empty:
            continue
        if labels is None:
            labels = label_snapshots(spec, raw_root, [scored_on], as_of)
        y = scores[spec.entity.key].isin(set(labels[spec.entity.key])).to_numpy().astype(int)
        metrics = realized_metrics(y, scores.score.to_numpy())
        metrics["model_version"] = int(scores.model_version.iloc[0])
        out["roles"][role] = metrics
    if not out["roles"]:
        out["skipped"] = f"no scores on {scored_on} (the newest date whose {spec.label.horizon_days}-day labels matured)"
    return out


def decide_retrain(spec: UseCaseSpec, settings: Settings, as_of: dt.date, drift: dict, performance: dict,
                   training_active: bool) -> dict:
    """Check the figures against the policy, apply the cool-down and the active-training rule."""
    from batchml import warehouse as wh
    from batchml.monitoring import retrain_decision

    engine = wh.create_engine(settings.warehouse_url)
    last = wh.last_retrain_request(engine, spec.monitoring_table, as_of)
    decision = retrain_decision(spec, as_of, drift.get("summary"), performance.get("roles", {}).get("champion"),
                                drift.get("test_metrics", {}), last, training_active, data_ok=not drift.get("skipped"))
    out = {"request": decision.request, "reasons": decision.reasons, "suppressed": decision.suppressed,
           "figures": decision.figures, "last_request": last.isoformat() if last else None}
    log.info("Retraining decision for %s: %s %s", as_of, "REQUEST" if decision.request else "no request",
             decision.reasons + ([f"suppressed: {decision.suppressed}"] if decision.suppressed else []))
    return out


def review_challenger(spec: UseCaseSpec, settings: Settings, performance: dict, airflow_run_id: str) -> dict:
    """Promote (or recommend) the shadow challenger when it beats the champion on matured outcomes."""
    from batchml import registry
    from batchml import warehouse as wh

    cfg = spec.monitoring.challenger
    roles = performance.get("roles", {})
    champ, chall = roles.get("champion"), roles.get("challenger")
    if not champ or not chall or "roc_auc" not in champ or "roc_auc" not in chall:
        return {"action": "none", "reason": "no matured shadow scores to compare"}
    if chall["rows"] < cfg.min_labelled_rows:
        return {"action": "none", "reason": f"{int(chall['rows'])} labelled rows < {cfg.min_labelled_rows}"}
    gain = chall["roc_auc"] - champ["roc_auc"]
    if gain < cfg.margin:
        return {"action": "none", "reason": f"challenger ROC AUC {chall['roc_auc']:.3f} does not beat the champion's "
                                            f"{champ['roc_auc']:.3f} by {cfg.margin}"}
    reasons = [f"challenger v{chall['model_version']} ROC AUC {chall['roc_auc']:.4f} beats champion "
               f"v{champ['model_version']} {champ['roc_auc']:.4f} by {gain:.4f} on {int(chall['rows'])} matured rows "
               f"(scored {performance['scored_on']})"]
    engine = wh.create_engine(settings.warehouse_url)
    event = "promotion_recommended"
    previous = champ["model_version"]
    if cfg.action == "promote":
        client = registry.connect(settings)
        previous = registry.promote(client, spec.model_name, chall["model_version"])
        event = "promoted_on_evidence"
    wh.record_registry_event(engine, use_case=spec.name, model_name=spec.model_name,
                             model_version=chall["model_version"], event=event, reasons=reasons,
                             metrics={"challenger": chall, "champion": champ}, previous_champion=previous,
                             actor="monitoring", airflow_run_id=airflow_run_id)
    log.info("%s: %s", event, reasons[0])
    return {"action": event, "reason": reasons[0]}


def publish_monitoring(spec: UseCaseSpec, settings: Settings, as_of: dt.date, drift: dict, performance: dict,
                       decision: dict, airflow_run_id: str) -> dict:
    """Write D's figures to the monitoring table (replacing a re-run's) and render the HTML drift report."""
    from batchml import warehouse as wh

    rows: list[dict] = []
    version = drift.get("model_version")
    details = json.loads(Path(drift["drift_file"]).read_text()) if drift.get("drift_file") else {}
    if drift.get("skipped"):
        rows.append({"model_role": "champion", "metric": "drift", "status": "skipped", "detail": drift["skipped"]})
    for f in details.get("figures", []):
        rows.append({**f, "model_version": version})
    for role, metrics in performance.get("roles", {}).items():
        for name in ("roc_auc", "pr_auc", "calibration_error", "top_decile_capture", "rows", "positives"):
            if name in metrics:
                rows.append({"model_role": role, "model_version": metrics["model_version"],
                             "metric": f"realized_{name}", "value": metrics[name], "status": "info",
                             "detail": f"scores of {performance['scored_on']}"})
    if performance.get("skipped"):
        rows.append({"model_role": "champion", "metric": "realized_performance", "status": "skipped",
                     "detail": performance["skipped"]})
    status = "requested" if decision["request"] else "suppressed" if decision.get("suppressed") else "ok"
    rows.append({"model_role": "champion", "model_version": version, "metric": "retrain_request",
                 "value": 1.0 if decision["request"] else 0.0, "status": status,
                 "detail": "; ".join(decision["reasons"] + ([f"suppressed: {decision['suppressed']}"]
                                                            if decision.get("suppressed") else [])) or "no trigger"})
    for row in rows:
        row.setdefault("model_role", "champion")
        row["airflow_run_id"] = airflow_run_id
    engine = wh.create_engine(settings.warehouse_url)
    written = wh.replace_monitoring_rows(engine, spec.monitoring_table, as_of, rows)
    report = None
    if details:
        report = str(render_drift_report(spec, settings, as_of, details, performance, decision))
    alerts = [r for r in rows if r.get("status") == "alert"]
    return {"as_of": as_of.isoformat(), "rows": written, "alerts": len(alerts), "report": report,
            "retrain": status}


def render_drift_report(spec: UseCaseSpec, settings: Settings, as_of: dt.date, details: dict, performance: dict,
                        decision: dict) -> Path:
    from batchml.evaluation import _plt, render_page

    plt = _plt()
    folder = work_dir(spec, settings, as_of) / "plots"
    importance = [row["feature"] for row in details.get("importance", [])]
    by_feature: dict[str, dict] = {}
    for f in details["figures"]:
        if f["feature"]:
            entry = by_feature.setdefault(f["feature"], {"feature": f["feature"], "status": "ok", "detail": ""})
            if f["metric"] == "psi":
                entry["psi"] = f["value"]
            elif f["metric"] == "ks_statistic":
                entry["ks"] = f["value"]
            elif f["metric"] == "unseen_share":
                entry["unseen"] = f["value"]
            if f["status"] in ("alert", "warn", "skipped") and entry["status"] != "alert":
                entry["status"] = f["status"]
            if f["detail"]:
                entry["detail"] = (entry["detail"] + "; " if entry["detail"] else "") + f["detail"]
    for name, entry in by_feature.items():
        entry["rank"] = importance.index(name) + 1 if name in importance else None
    features = sorted(by_feature.values(), key=lambda e: -(e.get("psi") or 0))
    plots = {"score": _hist_plot(plt, "score", details["histograms"]["score"], folder)}
    shown = [e["feature"] for e in features if e["status"] in ("alert", "warn")][:12]
    shown += [f for f in importance[:6] if f not in shown]
    keys = []
    for name in shown:
        if name in details["histograms"]:
            key = f"feature_{len(keys)}"
            plots[key] = _hist_plot(plt, name, details["histograms"][name], folder)
            keys.append(key)
    summary = details["summary"]
    title = ("requested" if decision["request"] else
             f"not requested ({decision['suppressed']})" if decision.get("suppressed") else "no trigger")
    context = {
        "use_case": spec.name, "as_of": as_of.isoformat(), "version": details["model_version"],
        "rows": details["rows"], "reference_rows": details["reference_rows"],
        "decision": decision, "decision_title": title,
        "decision_class": "requested" if decision["request"] else "suppressed" if decision.get("suppressed") else "quiet",
        "score_psi": summary["score_psi"],
        "mean_score": next((f["value"] for f in details["figures"] if f["metric"] == "mean_score"), None),
        "thresholds": {"psi_warn": spec.monitoring.psi_warn, "psi_alert": spec.monitoring.psi_alert},
        "performance": performance.get("roles", {}), "performance_date": performance.get("scored_on"),
        "test_metrics": {**details["test_metrics"]}, "horizon": spec.horizon_days,
        "features": features, "feature_plots": keys,
    }
    return render_page("drift_report.html.j2", context, plots, report_path(spec, settings, as_of))


def _hist_plot(plt, name: str, hist: dict, folder: Path) -> Path:
    import numpy as np

    from batchml.evaluation import _save

    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    if hist["kind"] == "numeric":
        edges = hist["edges"]
        labels = ["<" + _short(edges[0])] + [f"{_short(a)}–{_short(b)}" for a, b in zip(edges, edges[1:], strict=False)] \
            + ["≥" + _short(edges[-1])] if edges else ["all"]
    else:
        labels = hist["categories"]
    x = np.arange(len(labels))
    ax.bar(x - 0.2, hist["ref"], width=0.4, label="reference")
    ax.bar(x + 0.2, hist["cur"], width=0.4, label="today")
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=6)
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize=6)
    return _save(fig, folder / f"{name}.png")


def _short(v: float) -> str:
    return f"{v:.3g}"


def retrain_request_asset(spec: UseCaseSpec):
    """The asset whose events request a training run (the training DAG is scheduled on it)."""
    from airflow.sdk import Asset

    return Asset(name=f"{spec.name}.retrain_request")


def latest_retrain_request(spec: UseCaseSpec, since: dt.datetime | None = None) -> dict | None:
    """The payload of the newest retrain-request asset event (emitted after `since`), from Airflow's metadata DB:
    what the scheduler hands the training DAG."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = (select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
             .where(AssetModel.name == retrain_request_asset(spec).name))
    if since is not None:
        query = query.where(AssetEvent.timestamp >= since)
    with create_session() as session:
        event = session.scalars(query.order_by(AssetEvent.timestamp.desc())).first()
        return dict(event.extra) if event else None


def retrain_request(spec: UseCaseSpec, decision: dict) -> dict:
    """What a retrain request carries: the training date, the reason and the figures behind it."""
    return {"trigger": "drift" if decision["figures"].get("drift") else "decay",
            "training_date": decision["figures"]["as_of"],
            "reason": "monitoring: " + "; ".join(decision["reasons"]),
            "figures": decision["figures"]}


# Wiring ----------------------------------------------------------------------------------------------------------

_DOC = """
For the run's date **D** (the date of the published scores that triggered it, or the `as_of` param):

1. `compute_drift`: D's features and champion scores against the reference stored with the version that scored
   them: PSI, KS, chi-square, null and unseen shares per feature; PSI of the scores.
2. `realized_performance`: {realized}
3. `review_challenger`: a challenger that beats the champion by {margin} ROC AUC on at least {min_rows} matured rows is
   {action}.
4. `decide_retrain`: score PSI >= {score_psi}, or >= {share:.0%} of the top {top} features (or {all_share:.0%} of all) with
   PSI >= {psi_alert}, or a realized ROC AUC {auc_drop} below the test window's; at most once per {cooldown} days,
   never while a training run is active.
5. `publish_monitoring`: figures to `{table}`, an HTML drift report; alerts go to the notifier.
6. `request_retrain`: emits the `{asset}` asset event, carrying the reason and the figures; `{training}` is
   scheduled on it.
"""


def build_dag(spec: UseCaseSpec, settings: Settings):
    from airflow.sdk import Asset, dag, get_current_context, task

    from batchml.alerts import BatchMLNotifier
    from batchml.pipelines.common import as_of_params, assets_or_cron, dag_args, fail_fast, resolve_as_of

    mon = spec.monitoring
    scores_asset = Asset(name=f"{spec.name}.scores")
    retrain_asset = retrain_request_asset(spec)
    schedule = assets_or_cron(scores_asset, mon.schedule)
    realized = (f"scores of D-{spec.horizon_days}d against outcomes now matured, for the champion and the challenger."
                if spec.horizon_days else "skipped: the label is a column of the snapshot, known when scoring.")
    doc = _DOC.format(realized=realized, margin=mon.challenger.margin,
                      min_rows=mon.challenger.min_labelled_rows,
                      action="promoted" if mon.challenger.action == "promote" else "recommended for promotion",
                      score_psi=mon.retrain.score_psi, share=mon.retrain.drifted_important_share,
                      all_share=mon.retrain.drifted_share,
                      top=mon.retrain.important_features, psi_alert=mon.psi_alert, auc_drop=mon.retrain.auc_drop,
                      cooldown=mon.retrain.cooldown_days, table=spec.monitoring_table, training=spec.dag_id("training"),
                      asset=retrain_asset.name)

    # max_active_runs=1: cool-downs read earlier runs' requests, so one date at a time
    @dag(**dag_args(spec, "monitoring", doc, schedule, max_active_runs=1, params=as_of_params()))
    def monitoring_dag():
        def as_of(context) -> dt.date:
            if (context.get("params") or {}).get("as_of"):
                return resolve_as_of(context)
            for events in (context.get("triggering_asset_events") or {}).values():
                for event in events:
                    if (event.extra or {}).get("as_of"):
                        return dt.date.fromisoformat(event.extra["as_of"])
            return resolve_as_of(context)

        @task(task_id="compute_drift")
        @fail_fast
        def compute_drift_task() -> dict:
            return compute_drift(spec, settings, as_of(get_current_context()))

        @task(task_id="realized_performance")
        @fail_fast
        def realized_performance_task() -> dict:
            return realized_performance(spec, settings, as_of(get_current_context()))

        @task(task_id="review_challenger")
        @fail_fast
        def review_challenger_task(performance: dict) -> dict:
            return review_challenger(spec, settings, performance, str(get_current_context()["run_id"]))

        @task(task_id="decide_retrain")
        @fail_fast
        def decide_retrain_task(drift: dict, performance: dict) -> dict:
            context = get_current_context()
            active = context["ti"].get_dr_count(dag_id=spec.dag_id("training"), states=["queued", "running"])
            return decide_retrain(spec, settings, as_of(context), drift, performance, training_active=active > 0)

        @task(task_id="publish_monitoring")
        @fail_fast
        def publish_monitoring_task(drift: dict, performance: dict, decision: dict) -> dict:
            context = get_current_context()
            result = publish_monitoring(spec, settings, as_of(context), drift, performance, decision,
                                        str(context["run_id"]))
            if result["alerts"] or decision["request"]:
                BatchMLNotifier(
                    f"batchml {spec.name}: {result['alerts']} drift alert(s) on {result['as_of']}; retraining "
                    f"{result['retrain']}. Report: {result['report']}").notify(context)
            return result

        @task(task_id="request_retrain", outlets=[retrain_asset])
        @fail_fast
        def request_retrain(decision: dict, published: dict) -> dict:
            """Emit the retrain-request asset event (the training DAG is scheduled on it), or nothing."""
            from airflow.sdk.exceptions import AirflowSkipException

            if not decision["request"]:
                raise AirflowSkipException("no retraining requested: " + (decision.get("suppressed") or "no trigger"))
            request = retrain_request(spec, decision)
            get_current_context()["outlet_events"][retrain_asset].extra = request
            return request

        drift = compute_drift_task()
        performance = realized_performance_task()
        review_challenger_task(performance)
        decision = decide_retrain_task(drift, performance)
        published = publish_monitoring_task(drift, performance, decision)
        request_retrain(decision, published)

    return monitoring_dag()


def dags() -> dict[str, object]:
    from batchml.pipelines.common import load_all

    settings, specs = load_all()
    return {spec.dag_id("monitoring"): build_dag(spec, settings) for spec in specs}
