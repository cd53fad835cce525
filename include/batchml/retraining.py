"""The retraining policy (check -> decide -> trigger) and what a request tells the training DAG.

Drift and label delay: a drift shows in the features and scores the day it starts, but outcomes after it are known
only `horizon_days` later. A training run for date T learns from snapshots whose labels matured before T, so one run
right after a drift sees the old regime only (its newest test snapshot is T - horizon, before the drift) and cannot
learn the new one. The policy therefore *schedules* a drift-triggered retraining for the date the labels of the first
day the drift was seen have matured: training_date = first drift day + horizon. The monitoring run of that date (or
the first one after it) emits the request with that training date; the training DAG, scheduled on the request
asset, reads it from the event. Until then each monitoring run records the schedule (status `scheduled`), so the
wait is visible, and the drift report says when the retraining will happen and why.

The alternative, training at once with importance weights from a domain classifier (current vs training features),
reweights old-regime rows to look like new ones; it cannot teach the model how the new regime's outcomes depend on
its features, which is what changes in a concept drift, and it needs a weighted training path. Waiting for labels
is slower but learns from real post-drift outcomes, and with the champion still scoring meanwhile, nothing is lost
by waiting. A decay trigger (the realized ROC AUC on matured labels drops) requests at once: its labels have matured.
A label that is a column of the snapshot (horizon 0) has no delay: drift requests at once too.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from batchml.results import RetrainDecision, TrainingRequest
from batchml.specs import UseCaseSpec

_SCHEDULE = re.compile(r"training_date (\d{4}-\d\d-\d\d); drift first seen (\d{4}-\d\d-\d\d); "
                       r"scheduled on (\d{4}-\d\d-\d\d)")


@dataclass(frozen=True)
class ScheduledRetrain:
    """A drift-triggered retraining waiting for the labels of the drift to mature."""

    training_date: dt.date
    drift_since: dt.date
    scheduled_on: dt.date

    def detail(self, horizon: int) -> str:
        """The schedule as the monitoring table records it (`parse` reads it back)."""
        return (f"training_date {self.training_date}; drift first seen {self.drift_since}; scheduled on "
                f"{self.scheduled_on}: the {horizon}-day labels of {self.drift_since} mature on {self.training_date}")

    @classmethod
    def parse(cls, detail: str | None) -> ScheduledRetrain | None:
        match = _SCHEDULE.match(detail or "")
        if not match:
            return None
        return cls(*(dt.date.fromisoformat(g) for g in match.groups()))


def drift_reasons(spec: UseCaseSpec, drift: dict | None) -> list[str]:
    """What in the day's drift figures crosses the policy's thresholds."""
    policy, out = spec.monitoring.retrain, []
    if not drift:
        return out
    if drift.get("score_psi") is not None and drift["score_psi"] >= policy.score_psi:
        out.append(f"score PSI {drift['score_psi']:.3f} >= {policy.score_psi}")
    if drift.get("drifted_important_share", 0) >= policy.drifted_important_share and drift.get("drifted_important"):
        out.append(f"{len(drift['drifted_important'])} of the top {policy.important_features} features drifted "
                   f"(PSI >= {spec.monitoring.psi_alert}): {', '.join(drift['drifted_important'])}")
    elif drift.get("drifted_share", 0) >= policy.drifted_share and drift.get("psi_alert_features"):
        names = drift["psi_alert_features"]
        out.append(f"{drift['drifted_share']:.0%} of the features drifted (PSI >= {spec.monitoring.psi_alert}), most: "
                   f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}")
    return out


def decay_reasons(spec: UseCaseSpec, performance: dict | None, test_metrics: dict) -> list[str]:
    """A realized ROC AUC (matured labels) too far below the test window's."""
    policy = spec.monitoring.retrain
    if performance and "roc_auc" in performance and "roc_auc" in test_metrics:
        drop = test_metrics["roc_auc"] - performance["roc_auc"]
        if drop >= policy.auc_drop:
            return [f"realized ROC AUC {performance['roc_auc']:.3f} is {drop:.3f} below the test window's "
                    f"{test_metrics['roc_auc']:.3f} (margin {policy.auc_drop})"]
    return []


def _label_delay(spec: UseCaseSpec, schedule: ScheduledRetrain) -> dict:
    every = getattr(spec.training.split, "every_days", None)
    return {"drift_since": schedule.drift_since.isoformat(), "labels_mature_on": schedule.training_date.isoformat(),
            "training_date": schedule.training_date.isoformat(), "horizon_days": spec.horizon_days,
            "scheduled_on": schedule.scheduled_on.isoformat(),
            "note": (f"the newest snapshot a training run for {schedule.training_date} uses is "
                     f"{schedule.drift_since}, the first day the drift was seen"
                     + (f"; its other snapshots (every {every} days before) are older" if every else ""))}


def retrain_decision(spec: UseCaseSpec, as_of: dt.date, drift: dict | None, performance: dict | None,
                     test_metrics: dict, last_request: dt.date | None, training_active: bool,
                     data_ok: bool = True, pending: ScheduledRetrain | None = None) -> RetrainDecision:
    """Check -> decide: do drift or decay cross the policy's thresholds, may a retrain be requested now, or is one
    scheduled for when the drift's labels mature (`pending`: the schedule earlier runs recorded, if any)?"""
    policy, horizon = spec.monitoring.retrain, spec.horizon_days
    drifted, decayed = drift_reasons(spec, drift), decay_reasons(spec, performance, test_metrics)
    reasons = drifted + decayed
    figures: dict = {"drift": drift or {}, "performance": performance or {}, "as_of": as_of.isoformat()}
    common = {"figures": figures, "last_request": last_request}

    if pending is not None and as_of >= pending.training_date:  # a scheduled retraining is due
        figures["label_delay"] = _label_delay(spec, pending)
        due = [f"drift first seen on {pending.drift_since}: its {horizon}-day labels matured on "
               f"{pending.training_date}, the training date scheduled on {pending.scheduled_on}"]
        if training_active:
            return RetrainDecision(request=False, reasons=due + reasons, scheduled_for=pending.training_date,
                                   drift_since=pending.drift_since, suppressed="a training run for this use case is "
                                   "already active; the scheduled request is emitted by the next monitoring run",
                                   **common)
        return RetrainDecision(request=True, reasons=due + reasons, training_date=pending.training_date,
                               drift_since=pending.drift_since, trigger="drift", **common)

    suppressed = None
    if not reasons:
        pass
    elif not data_ok:
        suppressed = "data-quality problems are not drift: fix the data first"
    elif not policy.enabled:
        suppressed = "retraining on drift is disabled in the spec (recommend only)"
    elif last_request is not None and (as_of - last_request).days < policy.cooldown_days:
        suppressed = (f"cool-down: a retrain was requested on {last_request} "
                      f"(at most one per {policy.cooldown_days} days)")
    schedule = pending
    if drifted and horizon and pending is None and suppressed is None:
        schedule = ScheduledRetrain(as_of + dt.timedelta(days=horizon), as_of, as_of)
    if schedule is not None:
        figures["label_delay"] = _label_delay(spec, schedule)
        reasons = reasons + [
            f"labels after the drift first seen on {schedule.drift_since} mature on {schedule.training_date}: "
            f"retraining {'is ' if schedule is pending else ''}scheduled for {schedule.training_date}"
            + (" (a training run now would learn the old regime only)" if drifted and not decayed else "")]
    if decayed and suppressed is None and not training_active:  # matured labels: request now
        return RetrainDecision(request=True, reasons=reasons, training_date=as_of, trigger="decay",
                               scheduled_for=schedule.training_date if schedule else None,
                               drift_since=schedule.drift_since if schedule else None, **common)
    if decayed and suppressed is None:
        suppressed = "a training run for this use case is already active"
    if drifted and not horizon and suppressed is None:  # a label column of the snapshot: no label delay
        if training_active:
            suppressed = "a training run for this use case is already active"
        else:
            return RetrainDecision(request=True, reasons=reasons, training_date=as_of, trigger="drift", **common)
    return RetrainDecision(request=False, reasons=reasons, suppressed=suppressed,
                           scheduled_for=schedule.training_date if schedule else None,
                           drift_since=schedule.drift_since if schedule else None, **common)


def retrain_request(decision: RetrainDecision) -> TrainingRequest:
    """What a retrain request carries to the training DAG: the training date, the reason and the figures (with the
    label delay, when a drift started it)."""
    as_of = dt.date.fromisoformat(decision.figures["as_of"])
    trigger = decision.trigger or ("drift" if decision.figures.get("drift") else "decay")
    return TrainingRequest(trigger=trigger, training_date=decision.training_date or as_of,
                           reason="monitoring: " + "; ".join(decision.reasons), figures=decision.figures)
