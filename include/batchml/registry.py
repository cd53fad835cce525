"""MLflow: the tracking connection, experiments, models logged as pyfunc, registered versions and their
`champion`/`challenger` aliases. The gate that moves the aliases is in `gate`."""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batchml.errors import BatchMLError
from batchml.settings import Settings
from batchml.specs import UseCaseSpec

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
    """The use case's experiment id, created with the configured artifact location if it does not exist yet (with
    a tracking server and no BATCHML_MLFLOW_ARTIFACT_ROOT, the server's own artifact store)."""
    found = client.get_experiment_by_name(experiment_name(spec))
    if found is not None:
        return found.experiment_id
    root = settings.mlflow_artifact_root
    if root is None:
        return client.create_experiment(experiment_name(spec))
    # a URI (s3://, mlflow-artifacts:/, file:...) is used as it is; anything else is a local folder
    is_uri = re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", root) and not re.match(r"^[A-Za-z]:[\\/]", root)
    location = f"{root.rstrip('/')}/{spec.name}" if is_uri else (Path(root) / spec.name).resolve().as_uri()
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


def tag_version(client, model_name: str, version: int, tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, str(value)[:5000])
