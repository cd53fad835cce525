"""MLflow: tracking runs, the registered model, its `champion`/`challenger` aliases, and the gate between them.

The gate is data: floors and margin come from the spec and are checked with MLflow's own `MetricThreshold` /
`validate_evaluation_results`. A new model becomes `champion` only if it clears the floors and beats the current
champion, scored on the *same* test window, by the margin; a model that clears the floors but not the margin
becomes `challenger` (shadow-scored later); one that misses a floor is registered for the record with no alias.
Every decision is written to the model version's tags and to the warehouse's `model_registry_events` table.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batchml.errors import BatchMLError
from batchml.settings import Settings
from batchml.specs import LOWER_IS_BETTER, UseCaseSpec

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"


class RegistryError(BatchMLError):
    """The model registry cannot do what was asked (unknown version, nothing to roll back to, ...)."""


def connect(settings: Settings):
    """Point MLflow at the configured tracking URI; returns an MlflowClient."""
    import mlflow
    from mlflow import MlflowClient

    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        Path(settings.mlflow_tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)


def experiment_name(spec: UseCaseSpec) -> str:
    return f"batchml/{spec.name}"


def ensure_experiment(client, spec: UseCaseSpec, settings: Settings) -> str:
    """The use case's experiment id, created with the configured artifact location if it does not exist yet."""
    found = client.get_experiment_by_name(experiment_name(spec))
    if found is not None:
        return found.experiment_id
    root = settings.mlflow_artifact_root
    location = f"{root.rstrip('/')}/{spec.name}" if "://" in root else (Path(root) / spec.name).resolve().as_uri()
    return client.create_experiment(experiment_name(spec), artifact_location=location)


# The MLflow flavour of BatchModel --------------------------------------------------------------------------------

try:  # the class must be importable without mlflow installed only for type checks; tasks always have mlflow
    import mlflow.pyfunc as _pyfunc

    class BatchModelPyfunc(_pyfunc.PythonModel):
        """pyfunc wrapper: `predict` returns the probability of the positive class, preprocessing included."""

        def load_context(self, context):
            import joblib

            self.model = joblib.load(context.artifacts["batch_model"])

        def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
            return self.model.predict_proba(model_input)

except ImportError:  # pragma: no cover
    BatchModelPyfunc = None  # type: ignore[assignment,misc]


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("xgboost-cpu", "lightgbm", "scikit-learn", "pandas", "numpy", "joblib", "mlflow"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return reqs


def log_batch_model(model, input_example: pd.DataFrame) -> str:
    """Log a BatchModel as a pyfunc model in the active run, with signature and input example; returns its URI."""
    import joblib
    import mlflow
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "batch_model.joblib"
        joblib.dump(model, path)
        example = input_example[model.features].head(5)
        signature = infer_signature(example, model.predict_proba(example))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=BatchModelPyfunc(),
            artifacts={"batch_model": str(path)},
            signature=signature,
            input_example=example,
            pip_requirements=_pip_requirements(),
        )
    return info.model_uri


def load_batch_model(model_uri: str):
    """The BatchModel behind a registered pyfunc (for reason codes and direct access to the estimator)."""
    import mlflow

    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().model


def download_reference(client, model_name: str, version: int, dst: Path) -> Path:
    """The monitoring reference (profile.json, sample.parquet) stored with a model version's training run."""
    import mlflow

    run_id = client.get_model_version(model_name, str(version)).run_id
    dst.mkdir(parents=True, exist_ok=True)
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="reference", dst_path=str(dst))
    except Exception as exc:  # noqa: BLE001 - any failure means "no reference for this version"
        raise RegistryError(f"model {model_name!r} v{version} has no monitoring reference ({exc}); retrain it") from None
    return Path(path)


# Aliases ---------------------------------------------------------------------------------------------------------


def alias_version(client, model_name: str, alias: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def resolve_champion(client, model_name: str) -> int:
    """The champion's version number, or a RegistryError saying how to get one."""
    version = alias_version(client, model_name, CHAMPION)
    if version is None:
        raise RegistryError(
            f"model {model_name!r} has no champion yet: run the training DAG (its gate promotes the first model "
            "that clears the floors) or promote a version with the model_admin DAG"
        )
    return version


# The gate --------------------------------------------------------------------------------------------------------


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


def decide(spec: UseCaseSpec, candidate: dict[str, float], champion: dict[str, float] | None,
           champion_version: int | None) -> GateDecision:
    """Floors first, then the margin over the champion on the same test window."""
    gate = spec.training.gate
    decision = GateDecision("champion", gate.mode, gate.metric, gate.margin, champion_version=champion_version,
                            candidate_metrics=candidate, champion_metrics=champion or {})
    floor_failures = _validate({m: _threshold(m, threshold=v) for m, v in gate.floors.items()}, candidate, None)
    if floor_failures:
        decision.verdict = "rejected"
        decision.reasons = [f"misses a floor: {line}" for line in floor_failures]
        return decision
    floors_text = ", ".join(f"{m} {candidate[m]:.4f} vs floor {v}" for m, v in gate.floors.items())
    decision.reasons.append(f"clears the floors ({floors_text})")
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
    previous = alias_version(client, model_name, CHAMPION)
    if decision.mode == "dry_run":
        decision.reasons.append(f"dry run: aliases unchanged (would be {decision.verdict})")
        return previous
    if decision.verdict == "champion":
        client.set_registered_model_alias(model_name, CHAMPION, str(version))
        if alias_version(client, model_name, CHALLENGER) == version:
            client.delete_registered_model_alias(model_name, CHALLENGER)
    elif decision.verdict == "challenger":
        client.set_registered_model_alias(model_name, CHALLENGER, str(version))
    return previous


def tag_version(client, model_name: str, version: int, tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, str(value)[:5000])


# Model admin -----------------------------------------------------------------------------------------------------


def champion_history(events: list[dict]) -> list[int]:
    """Versions that held the champion alias, in the order they got it (from the registry events)."""
    assigning = {"promoted", "promoted_manually", "rolled_back"}
    return [e["model_version"] for e in events if e["event"] in assigning and e["model_version"] is not None]


def promote(client, model_name: str, version: int) -> int | None:
    """Make `version` the champion; returns the previous champion."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(model_name, str(version))
    except MlflowException:
        raise RegistryError(f"model {model_name!r} has no version {version}") from None
    previous = alias_version(client, model_name, CHAMPION)
    client.set_registered_model_alias(model_name, CHAMPION, str(version))
    if alias_version(client, model_name, CHALLENGER) == version:
        client.delete_registered_model_alias(model_name, CHALLENGER)
    return previous


def rollback_target(events: list[dict], current: int | None) -> int:
    """The champion before the current one."""
    history = champion_history(events)
    while history and history[-1] == current:
        history.pop()
    if not history:
        raise RegistryError("there is no earlier champion to roll back to (see model_registry_events)")
    return history[-1]
