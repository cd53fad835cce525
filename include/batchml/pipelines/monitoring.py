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

from batchml.pipelines.common import asset, run_date, step
from batchml.results import (
    ChallengerReview,
    DriftComputed,
    MonitoringPublished,
    RealizedPerformance,
    RetrainDecision,
    TrainingRequest,
)
from batchml.settings import Settings
from batchml.specs import UseCaseSpec

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


def _doc(spec: UseCaseSpec) -> str:
    mon = spec.monitoring
    realized = (f"scores of D-{spec.horizon_days}d against outcomes now matured, for the champion and the challenger."
                if spec.horizon_days else "skipped: the label is a column of the snapshot, known when scoring.")
    return _DOC.format(realized=realized, margin=mon.challenger.margin, min_rows=mon.challenger.min_labelled_rows,
                       action="promoted" if mon.challenger.action == "promote" else "recommended for promotion",
                       score_psi=mon.retrain.score_psi, share=mon.retrain.drifted_important_share,
                       all_share=mon.retrain.drifted_share, top=mon.retrain.important_features,
                       psi_alert=mon.psi_alert, auc_drop=mon.retrain.auc_drop, cooldown=mon.retrain.cooldown_days,
                       table=spec.monitoring_table, training=spec.dag_id("training"),
                       asset=f"{spec.name}.retrain_request")


def build_dag(spec: UseCaseSpec, settings: Settings):
    from airflow.sdk import dag, get_current_context, task

    from batchml.pipelines.common import as_of_params, assets_or_cron, dag_args

    retrain_asset = asset(spec, "retrain_request")
    schedule = assets_or_cron(asset(spec, "scores"), spec.monitoring.schedule)

    # max_active_runs=1: cool-downs read earlier runs' requests, so one date at a time
    @dag(**dag_args(spec, "monitoring", _doc(spec), schedule, max_active_runs=1, params=as_of_params()))
    def monitoring_dag():
        @task
        @step
        def compute_drift() -> DriftComputed:
            from batchml.monitoring import compute_drift as compute

            return compute(spec, settings, run_date(get_current_context()))

        @task
        @step
        def realized_performance() -> RealizedPerformance:
            from batchml.monitoring import realized_performance as realized

            return realized(spec, settings, run_date(get_current_context()))

        @task
        @step
        def review_challenger(performance: RealizedPerformance) -> ChallengerReview:
            from batchml.monitoring import review_challenger as review

            return review(spec, settings, performance, str(get_current_context()["run_id"]))

        @task
        @step
        def decide_retrain(drift: DriftComputed, performance: RealizedPerformance) -> RetrainDecision:
            from batchml.monitoring import decide_retrain as decide

            active = get_current_context()["ti"].get_dr_count(dag_id=spec.dag_id("training"),
                                                              states=["queued", "running"])
            return decide(spec, settings, drift, performance, training_active=active > 0)

        @task
        @step
        def publish_monitoring(drift: DriftComputed, performance: RealizedPerformance,
                               decision: RetrainDecision) -> MonitoringPublished:
            from batchml.monitoring import publish_monitoring as publish
            from batchml.pipelines.alerts import BatchMLNotifier

            context = get_current_context()
            result = publish(spec, settings, drift, performance, decision, str(context["run_id"]))
            if result.alerts or decision.request:
                BatchMLNotifier(
                    f"batchml {spec.name}: {result.alerts} drift alert(s) on {result.as_of}; retraining "
                    f"{result.retrain}. Report: {result.report}").notify(context)
            return result

        @task(outlets=[retrain_asset])
        @step
        def request_retrain(decision: RetrainDecision, published: MonitoringPublished) -> TrainingRequest:
            """Emit the retrain-request asset event (the training DAG is scheduled on it), or nothing."""
            from airflow.sdk.exceptions import AirflowSkipException

            from batchml.monitoring import retrain_request

            if not decision.request:
                raise AirflowSkipException("no retraining requested: " + (decision.suppressed or "no trigger"))
            request = retrain_request(decision)
            get_current_context()["outlet_events"][retrain_asset].extra = request.to_xcom()
            return request

        drift = compute_drift()
        performance = realized_performance()
        review_challenger(performance)
        decision = decide_retrain(drift, performance)
        request_retrain(decision, publish_monitoring(drift, performance, decision))

    return monitoring_dag()


def latest_retrain_request(spec: UseCaseSpec, since: dt.datetime | None = None) -> dict | None:
    """The payload of the newest retrain-request asset event (emitted after `since`), from Airflow's metadata DB:
    what the scheduler hands the training DAG."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = (session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                 .filter(AssetModel.name == f"{spec.name}.retrain_request"))
        if since is not None:
            query = query.filter(AssetEvent.timestamp >= since)
        event = query.order_by(AssetEvent.timestamp.desc()).first()
        return dict(event.extra) if event else None


def dags() -> dict[str, object]:
    from batchml.pipelines.common import load_all

    settings, specs = load_all()
    return {spec.dag_id("monitoring"): build_dag(spec, settings) for spec in specs}
