"""What one step of a pipeline hands the next: small typed references (paths, dates, counts, versions), never data.

Every step function of the package returns one of these; the DAGs pass them between tasks as XComs. Their XCom
form is defined here, once: `to_xcom()` gives plain JSON (dates as ISO text) and `from_xcom()` reads it back, so
dates are dates on both sides and no task reads another task's dict by key.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Self

from pydantic import BaseModel, ConfigDict


class StepResult(BaseModel):
    """Base of every step result: frozen, unknown fields refused, a JSON form for XCom."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_xcom(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_xcom(cls, value: dict[str, Any] | Self) -> Self:
        return value if isinstance(value, cls) else cls.model_validate(value)

    @classmethod
    def extending(cls, previous: StepResult, **fields: Any) -> Self:
        """This step's result: what the previous step handed on (the fields both share) plus this step's own."""
        return cls(**{**{k: v for k, v in previous if k in cls.model_fields}, **fields})


# Features ----------------------------------------------------------------------------------------------------------


class LandedRaw(StepResult):
    """Every raw partition a feature run for `as_of` reads has landed; `raw_root` is a local folder holding them
    (the landing zone itself, or a local mirror of an S3 one)."""

    as_of: dt.date
    raw_root: str
    partitions: dict[str, list[dt.date]]


class RawChecked(LandedRaw):
    """The raw partitions passed their checks; rows checked per suite and the Data Docs page."""

    raw_checks: dict[str, int] = {}
    data_docs: str | None = None


class StagedFeatures(RawChecked):
    """The feature job wrote the table as of `as_of` into a staging file (not published)."""

    staged_file: str
    rows: int
    job_seconds: float


class CheckedFeatures(StagedFeatures):
    """The staged feature table passed its checks."""

    expected_rows: int


class PublishedFeatures(StepResult):
    """The feature partition of `as_of` is published at `path`."""

    as_of: dt.date
    path: str
    rows: int
    data_docs: str | None = None


class SnapshotsReady(StepResult):
    """Every snapshot a training run needs has a published feature partition; `built` were missing and built now."""

    training_date: dt.date
    snapshots: list[dt.date]
    built: list[dt.date]


# Training ----------------------------------------------------------------------------------------------------------


class TrainingRequest(StepResult):
    """Why and for which date a training run happens (a schedule, a person, or a monitoring request)."""

    training_date: dt.date
    trigger: str = "schedule_or_manual"
    reason: str = ""
    figures: dict[str, Any] | None = None


class TrainingSetRef(StepResult):
    """The training set saved in a run folder, with its lineage."""

    run_dir: str
    training_date: dt.date
    rows: dict[str, int]
    label_rate: dict[str, float]
    data_hash: str


class SelectedModel(StepResult):
    """The candidates are tuned and the best one on validation is selected (and calibrated), in `run_dir`."""

    run_dir: str
    selected: str
    valid_score: float


class EvaluatedModel(SelectedModel):
    """The selected model and every candidate are evaluated on the test window (evaluation.json in `run_dir`)."""

    test_roc_auc: float
    baseline_test_roc_auc: float


class GateResult(StepResult):
    """A registered model version and the gate's verdict on it."""

    model_name: str
    version: int
    verdict: str
    reasons: list[str]
    previous_champion: int | None
    mlflow_run_id: str
    model_card: str
    test_roc_auc: float
    baseline_test_roc_auc: float


class AdminResult(StepResult):
    """A manual promotion or rollback."""

    model_name: str
    champion: int
    previous_champion: int | None
    event: str


# Scoring -----------------------------------------------------------------------------------------------------------


class PinnedVersions(StepResult):
    """The model versions a scoring run uses, resolved once from the aliases."""

    model_name: str
    champion: int
    challenger: int | None = None

    @property
    def roles(self) -> dict[str, int]:
        return {role: v for role, v in (("champion", self.champion), ("challenger", self.challenger)) if v}


class StagedScores(PinnedVersions):
    """Scores of `as_of` written to a staged Parquet file."""

    as_of: dt.date
    staged_file: str
    entities: int
    rows: int
    exact_reason_rows: int
    seconds: dict[str, float]


class LoadedScores(StagedScores):
    """The staged scores are in a staging table of the warehouse."""

    staging_table: str


class CheckedScores(LoadedScores):
    """The staging table passed its checks."""

    data_docs: str | None = None


class PublishedScores(StepResult):
    """The scores of `as_of` are the rows of `table` for that date."""

    table: str
    as_of: dt.date
    rows: int
    entities: int
    champion: int
    challenger: int | None
    exported: str | None
    data_docs: str | None
    seconds: dict[str, float]


# Monitoring --------------------------------------------------------------------------------------------------------


class DriftComputed(StepResult):
    """Drift of one date against the reference of the version that scored it (details in `drift_file`)."""

    as_of: dt.date
    model_version: int | None = None
    summary: dict[str, Any] = {}
    test_metrics: dict[str, float] = {}
    drift_file: str | None = None
    skipped: str | None = None


class RealizedPerformance(StepResult):
    """Metrics of the scores whose labels have matured, per model role."""

    as_of: dt.date
    scored_on: dt.date | None = None
    roles: dict[str, dict[str, float]] = {}
    skipped: str | None = None
    since_drift: list[dict[str, Any]] = []
    """Since the first day of the latest drift: each model version's metrics on every scored date whose labels have
    matured (rows pooled), and on the dates both versions scored (paired); see `monitoring.realized_by_version`."""
    drift_since: dt.date | None = None


class ChallengerReview(StepResult):
    action: str
    reason: str


class RetrainDecision(StepResult):
    """Check -> decide: whether a retrain is requested, why, and why not (suppressed)."""

    request: bool
    reasons: list[str]
    suppressed: str | None = None
    figures: dict[str, Any] = {}
    last_request: dt.date | None = None
    training_date: dt.date | None = None
    """The date the requested training run is for (a drift's: when its labels matured)."""
    trigger: str | None = None
    """drift or decay, when a request is made."""
    scheduled_for: dt.date | None = None
    """A drift-triggered retraining waits for the drift's labels: the monitoring run of this date requests it."""
    drift_since: dt.date | None = None
    """The first day the drift behind `scheduled_for` (or behind the request) was seen."""


class MonitoringPublished(StepResult):
    as_of: dt.date
    rows: int
    alerts: int
    report: str | None
    retrain: str
