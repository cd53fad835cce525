"""The champion/challenger gate, and the record of every decision about a model version.

The gate is data: floors and margin come from the spec and are checked with MLflow's own `MetricThreshold` /
`validate_evaluation_results`. A new model becomes `champion` only if it clears the floors and beats the current
champion, scored on the *same* test window, by the margin; a model that clears the floors but not the margin
becomes `challenger` (shadow-scored later); one that misses a floor is registered for the record with no alias.
Every decision (and every manual promotion or rollback) is written to the model version's tags and to the
warehouse table `model_registry_events`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from batchml import registry
from batchml import warehouse as wh
from batchml.metrics import better
from batchml.registry import RegistryError
from batchml.results import AdminResult, EvaluatedModel, GateResult, TrainingRequest
from batchml.settings import REPO_ROOT, Settings
from batchml.specs import LOWER_IS_BETTER, UseCaseSpec

log = logging.getLogger(__name__)

REGISTRY_EVENTS_TABLE = "model_registry_events"


# The decision --------------------------------------------------------------------------------------------------------


@dataclass
class GateDecision:
    verdict: str  # champion | challenger | rejected
    mode: str
    metric: str
    margin: float
    reasons: list[str] = field(default_factory=list)
    champion_version: int | None = None
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    fairness: dict[str, float] = field(default_factory=dict)  # the fairness ratios the floors checked

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _threshold(metric: str, threshold: float | None = None, margin: float | None = None):
    from mlflow.models import MetricThreshold

    return MetricThreshold(threshold=threshold, min_absolute_change=margin, greater_is_better=metric not in LOWER_IS_BETTER)


def _validate(thresholds: dict, candidate: dict, baseline: dict | None) -> list[str]:
    """MLflow's validation; returns the failure lines (empty when everything passes)."""
    import mlflow
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    try:
        mlflow.validate_evaluation_results(
            thresholds,
            EvaluationResult(metrics=candidate, artifacts={}, run_id="candidate"),
            EvaluationResult(metrics=baseline, artifacts={}, run_id="baseline") if baseline is not None else None,
        )
    except ModelValidationFailedException as exc:
        return [line.strip(" -") for line in str(exc.message).splitlines() if line.strip(" -")]
    return []


def _fairness_floors(spec: UseCaseSpec, fairness: dict | None) -> tuple[list[str], list[str], dict[str, float]]:
    """Each fairness floor checked with MetricThreshold on the new model's ratio across the attribute's groups:
    (failure reasons, passing lines, the ratios checked)."""
    failures, passes, checked = [], [], {}
    attributes = (fairness or {}).get("attributes", {})
    flagged = f"score >= {fairness['threshold']} (band {fairness['band']})" if fairness else "the flag threshold"
    for floor in spec.training.gate.fairness:
        key = f"{floor.metric}[{floor.attribute}]"
        figures = attributes.get(floor.attribute, {})
        ratio = figures.get("ratios", {}).get("new", {}).get(floor.metric) or {}
        if ratio.get("value") is None:
            why = figures.get("problem") or (f"fewer than two groups with at least {fairness['min_group_rows']} test "
                                             "rows and a defined rate" if fairness else "no fairness figures")
            failures.append(f"misses a fairness floor: {key} >= {floor.min} cannot be checked: {why} (lower "
                            "training.fairness.min_group_rows, or remove the floor)")
            continue
        value = checked[key] = ratio["value"]
        rate = floor.metric.removesuffix("_ratio").replace("_", " ")
        detail = (f"{rate} {ratio['low']['value']:.3f} for {floor.attribute}={ratio['low']['group']} vs "
                  f"{ratio['high']['value']:.3f} for {floor.attribute}={ratio['high']['group']}, flagged = {flagged}")
        if _validate({key: _threshold(key, threshold=floor.min)}, {key: value}, None):
            failures.append(f"misses a fairness floor: {key} = {value:.3f} < {floor.min} ({detail})")
        else:
            passes.append(f"{key} {value:.3f} vs floor {floor.min} ({detail})")
    return failures, passes, checked


def _beat_baselines(metrics: list[str], candidate: dict[str, float],
                    baselines: dict[str, dict[str, float]]) -> tuple[list[str], list[str]]:
    """(failures, passes) of `gate.beat_baselines`: the new model must be strictly better than every baseline on
    each metric, on the same test window."""
    failures, passes = [], []
    for m in metrics:
        for name, figures in baselines.items():
            if m not in figures or m not in candidate:
                failures.append(f"cannot compare with baseline {name} on {m}: not measured on the test window")
            elif better(m, candidate[m], figures[m]):
                passes.append(f"beats baseline {name} on {m} ({candidate[m]:.4f} vs {figures[m]:.4f})")
            else:
                failures.append(f"does not beat baseline {name} on {m} ({candidate[m]:.4f} vs {figures[m]:.4f})")
    return failures, passes


def decide(spec: UseCaseSpec, candidate: dict[str, float], champion: dict[str, float] | None,
           champion_version: int | None, fairness: dict | None = None,
           baselines: dict[str, dict[str, float]] | None = None) -> GateDecision:
    """Floors first (metric floors, then fairness floors on `fairness`: the evaluate step's fairness figures, then
    `gate.beat_baselines` against `baselines`: the logistic baseline's and the rules' test-window metrics), then
    the margin over the champion on the same test window."""
    gate = spec.training.gate
    decision = GateDecision("champion", gate.mode, gate.metric, gate.margin, champion_version=champion_version,
                            candidate_metrics=candidate, champion_metrics=champion or {})
    floor_failures = _validate({m: _threshold(m, threshold=v) for m, v in gate.floors.items()}, candidate, None)
    fair_failures, fair_passes, decision.fairness = _fairness_floors(spec, fairness)
    baseline_failures, baseline_passes = _beat_baselines(gate.beat_baselines, candidate, baselines or {})
    if floor_failures or fair_failures or baseline_failures:
        decision.verdict = "rejected"
        decision.reasons = [f"misses a floor: {line}" for line in floor_failures] + fair_failures + baseline_failures
        return decision
    floors_text = ", ".join(f"{m} {candidate[m]:.4f} vs floor {v}" for m, v in gate.floors.items())
    decision.reasons.append(f"clears the floors ({floors_text})")
    decision.reasons += [f"clears the fairness floor: {line}" for line in fair_passes]
    decision.reasons += baseline_passes
    if gate.mode == "disabled":
        decision.reasons.append("gate disabled: promoted without comparing with the champion")
        return decision
    if champion is None:
        decision.reasons.append("no champion yet: the first model that clears the floors becomes champion")
        return decision
    # MetricThreshold ignores a zero margin: "beats" then means strictly better
    margin = max(gate.margin, 1e-12)
    failures = _validate({gate.metric: _threshold(gate.metric, margin=margin)}, candidate, champion)
    versus = (f"{gate.metric} {candidate[gate.metric]:.4f} vs champion v{champion_version} "
              f"{champion[gate.metric]:.4f} (margin {gate.margin})")
    if failures:
        decision.verdict = "challenger"
        decision.reasons.append(f"does not beat the champion by the margin: {versus}")
    else:
        decision.reasons.append(f"beats the champion by the margin: {versus}")
    return decision


def apply_decision(client, model_name: str, version: int, decision: GateDecision) -> int | None:
    """Move aliases as decided (not in dry-run mode); returns the previous champion version."""
    if decision.mode == "dry_run":
        decision.reasons.append(f"dry run: aliases unchanged (would be {decision.verdict})")
        return registry.alias_version(client, model_name, registry.CHAMPION)
    if decision.verdict == "champion":
        return registry.promote(client, model_name, version)
    if decision.verdict == "challenger":
        client.set_registered_model_alias(model_name, registry.CHALLENGER, str(version))
    return registry.alias_version(client, model_name, registry.CHAMPION)


# Registry events -----------------------------------------------------------------------------------------------


def events_table(metadata=None):
    import sqlalchemy as sa

    metadata = metadata if metadata is not None else sa.MetaData()
    return sa.Table(
        REGISTRY_EVENTS_TABLE, metadata,
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("use_case", sa.String(63), nullable=False),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("model_version", sa.Integer),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("previous_champion", sa.Integer),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("airflow_run_id", sa.String(255)),
        sa.Column("mlflow_run_id", sa.String(64)),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.Index(f"ix_{REGISTRY_EVENTS_TABLE}_model", "model_name", "recorded_at"),
        comment="Every model registration and alias change (champion/challenger gate, promotions, rollbacks), with "
                "its reasons and metrics (JSON).",
    )


def _events_v1(conn) -> None:
    events_table().create(conn, checkfirst=True)


EVENTS_MIGRATIONS = [wh.Migration("registry_events", 1, "model registry events table", _events_v1)]


def record_event(eng, *, use_case: str, model_name: str, model_version: int | None, event: str, reasons: list[str],
                 metrics: dict | None = None, previous_champion: int | None = None, actor: str = "airflow",
                 airflow_run_id: str | None = None, mlflow_run_id: str | None = None) -> None:
    """Append one registry event (promoted, challenger, rejected, promoted_manually, rolled_back, ...)."""
    wh.migrate(eng, EVENTS_MIGRATIONS)
    with eng.begin() as conn:
        conn.execute(events_table().insert().values(
            use_case=use_case, model_name=model_name, model_version=model_version, event=event,
            previous_champion=previous_champion, reasons=json.dumps(reasons),
            metrics=json.dumps(metrics or {}, default=float), actor=actor, airflow_run_id=airflow_run_id,
            mlflow_run_id=mlflow_run_id, recorded_at=dt.datetime.now(dt.UTC).replace(tzinfo=None)))


def read_events(eng, model_name: str) -> list[dict]:
    """Registry events of one model, oldest first, with reasons and metrics decoded."""
    import sqlalchemy as sa

    wh.migrate(eng, EVENTS_MIGRATIONS)
    table = events_table()
    with eng.connect() as conn:
        rows = conn.execute(sa.select(table).where(table.c.model_name == model_name)
                            .order_by(table.c.event_id)).mappings()
        return [{**r, "reasons": json.loads(r["reasons"]), "metrics": json.loads(r["metrics"])} for r in rows]


def champion_history(events: list[dict]) -> list[int]:
    """Versions that held the champion alias, in the order they got it (from the registry events)."""
    assigning = {"promoted", "promoted_manually", "rolled_back"}
    return [e["model_version"] for e in events if e["event"] in assigning and e["model_version"] is not None]


def rollback_target(events: list[dict], current: int | None) -> int:
    """The champion before the current one."""
    history = champion_history(events)
    while history and history[-1] == current:
        history.pop()
    if not history:
        raise RegistryError("there is no earlier champion to roll back to (see model_registry_events)")
    return history[-1]


# Steps of the training and model-admin DAGs ------------------------------------------------------------------------


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _champion_scores(spec: UseCaseSpec, version: int | None, ts) -> tuple[dict | None, object]:
    """The current champion scored on this run's test window, so that the gate compares like with like:
    (headline metrics, probabilities), or (None, None)."""
    from batchml.evaluation import window_metrics

    if version is None:
        return None, None
    try:
        champ = registry.load_batch_model(f"models:/{spec.model_name}/{version}")
        p = champ.predict_proba(ts.frames["test"])
        return window_metrics(spec, ts.frames["test"], ts.y("test"), p), p
    except Exception as exc:  # noqa: BLE001 - a champion trained on other features cannot be compared
        log.warning("Champion v%s cannot score this test window: %s", version, exc)
        return None, None


def _champion_intervals(spec: UseCaseSpec, ts, model, champion_p) -> dict | None:
    """Bootstrap intervals of the champion and of (new - champion), with the resamples the evaluate step used."""
    from batchml.metrics import HEADLINE, bootstrap_intervals

    conf = spec.training.confidence
    if champion_p is None or not conf.resamples:
        return None
    scores = {"new": model.predict_proba(ts.frames["test"]), "champion": champion_p}
    return bootstrap_intervals(ts.y("test"), scores, HEADLINE, conf.resamples, conf.level, conf.seed,
                               differences=(("new", "champion"),))


def register_and_gate(spec: UseCaseSpec, settings: Settings, evaluated: EvaluatedModel, airflow_run_id: str,
                      request: TrainingRequest | None = None) -> GateResult:
    """Log the run to MLflow, register the model, compare it with the champion on the same test window, move the
    aliases as the gate decides, render the model card, and record the decision."""
    import joblib
    import mlflow

    from batchml.datasets import TrainingSet
    from batchml.evaluation import flat_metrics
    from batchml.model_card import render_model_card

    folder = Path(evaluated.run_dir)
    ts = TrainingSet.load(folder / "data")
    evaluation = json.loads((folder / "evaluation.json").read_text())
    summary = json.loads((folder / "candidates.json").read_text())
    model = joblib.load(folder / "selected.joblib")
    client = registry.connect(settings)
    experiment_id = registry.ensure_experiment(client, spec, settings)
    model_name = spec.model_name
    eng = wh.engine(settings.warehouse_url)
    wh.migrate(eng, EVENTS_MIGRATIONS)

    champion_version = registry.alias_version(client, model_name, registry.CHAMPION)
    champion_metrics, champion_p = _champion_scores(spec, champion_version, ts)
    baselines = {f"{evaluation['baseline']['name']} (logistic)": evaluation["baseline"]["test_metrics"],
                 **{f"rule {name}": figures for name, figures in evaluation.get("rules", {}).items()}}
    decision = decide(spec, evaluation["test_metrics"], champion_metrics, champion_version, evaluation.get("fairness"),
                      baselines)
    if champion_version is not None and champion_metrics is None:
        decision.verdict = "challenger" if decision.verdict == "champion" else decision.verdict
        decision.reasons.append(f"champion v{champion_version} could not be scored on this test window: "
                                "promote manually with the model_admin DAG if intended")

    lineage = ts.lineage
    trigger = request.trigger if request else "schedule_or_manual"
    tags = {
        "batchml.use_case": spec.name,
        "batchml.airflow_run_id": airflow_run_id,
        "batchml.git_commit": git_commit(),
        "batchml.spec_sha256": spec.sha256,
        "batchml.data_hash": lineage["data_hash"],
        "batchml.training_date": lineage["training_date"],
        "batchml.selected": summary["selected"],
        "batchml.trigger": trigger,
    }
    if request and request.reason:
        tags["batchml.reason"] = request.reason[:4000]
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
        mlflow.log_metrics(flat_metrics(evaluation, summary))
        tuned_on = "tuning_cv" if summary.get("tuned_on", {}).get("mode") == "cv" else "valid"
        mlflow.log_metrics({f"{tuned_on}_{summary['metric']}": evaluated.valid_score,
                            **{f"label_rate_{k}": v for k, v in lineage["label_rate"].items()}})
        if request and request.figures:
            mlflow.log_dict(request.figures, "retrain_request.json")
        mlflow.log_dict(lineage, "lineage.json")
        mlflow.log_dict(summary, "candidates.json")
        mlflow.log_artifacts(str(folder / "plots"), "plots")
        mlflow.log_artifacts(str(folder / "reference"), "reference")
        model_uri = registry.log_batch_model(model, ts.frames["test"])
        version = int(mlflow.register_model(model_uri, model_name,
                                            tags={"batchml.airflow_run_id": airflow_run_id}).version)
        previous = apply_decision(client, model_name, version, decision)
        card = render_model_card(spec, folder, ts, version, decision.as_dict(), tags, run.info.run_id,
                                 _champion_intervals(spec, ts, model, champion_p))
        mlflow.log_artifact(str(card))
        mlflow.set_tags({"batchml.gate_verdict": decision.verdict, "batchml.model_version": version})

    registry.tag_version(client, model_name, version, {
        "gate.verdict": decision.verdict, "gate.mode": decision.mode, "gate.reasons": " | ".join(decision.reasons),
        "data_hash": lineage["data_hash"], "training_date": lineage["training_date"]})
    event = {"champion": "promoted", "challenger": "challenger", "rejected": "rejected"}[decision.verdict]
    if decision.mode == "dry_run":
        event = f"dry_run_{event}"
    record_event(eng, use_case=spec.name, model_name=model_name, model_version=version, event=event,
                 reasons=decision.reasons,
                 metrics={"candidate": decision.candidate_metrics, "champion": decision.champion_metrics,
                          **({"fairness": decision.fairness} if decision.fairness else {})},
                 previous_champion=previous, actor=trigger if request else "airflow", airflow_run_id=airflow_run_id,
                 mlflow_run_id=run.info.run_id)
    reports = settings.reports_root / spec.name / "model_cards"
    reports.mkdir(parents=True, exist_ok=True)
    published_card = reports / f"{model_name}_v{version}.html"
    published_card.write_bytes(card.read_bytes())
    log.info("Gate verdict for %s v%s: %s\n  %s", model_name, version, decision.verdict, "\n  ".join(decision.reasons))
    return GateResult(model_name=model_name, version=version, verdict=decision.verdict, reasons=decision.reasons,
                      previous_champion=previous, mlflow_run_id=run.info.run_id, model_card=str(published_card),
                      test_roc_auc=evaluation["test_metrics"]["roc_auc"],
                      baseline_test_roc_auc=evaluation["baseline"]["test_metrics"]["roc_auc"])


def admin_action(spec: UseCaseSpec, settings: Settings, action: str, version: int | None, reason: str,
                 actor: str, airflow_run_id: str) -> AdminResult:
    """Promote a given version to champion, or roll back to the previous champion; recorded like the gate."""
    if not reason or len(reason.strip()) < 3:
        raise RegistryError("say why in the `reason` param (it is recorded with the change)")
    client = registry.connect(settings)
    eng = wh.engine(settings.warehouse_url)
    model_name = spec.model_name
    if action == "promote":
        if version is None:
            raise RegistryError("action=promote needs the `version` param")
        target, event = int(version), "promoted_manually"
    elif action == "rollback":
        current = registry.alias_version(client, model_name, registry.CHAMPION)
        target, event = rollback_target(read_events(eng, model_name), current), "rolled_back"
    else:
        raise RegistryError(f"unknown action {action!r}; valid actions: promote, rollback")
    previous = registry.promote(client, model_name, target)
    reasons = [f"{action} by {actor}: {reason.strip()}", f"champion v{previous} -> v{target}"]
    registry.tag_version(client, model_name, target, {"admin.last_action": f"{event}: {reason.strip()}"})
    record_event(eng, use_case=spec.name, model_name=model_name, model_version=target, event=event, reasons=reasons,
                 previous_champion=previous, actor=actor, airflow_run_id=airflow_run_id)
    log.info("%s: champion of %s is now v%s (was v%s)", event, model_name, target, previous)
    return AdminResult(model_name=model_name, champion=target, previous_champion=previous, event=event)
