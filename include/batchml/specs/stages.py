"""The pipeline side of a spec: how training splits, tunes and gates; how scoring writes; when monitoring asks for
a retrain. Every field's docstring doubles as the spec reference.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Tag, field_validator

from batchml.specs.base import ColumnName, Identifier, Problem, SpecModel, kind_or

MetricName = Literal["roc_auc", "pr_auc", "log_loss", "brier", "top_decile_capture", "recall_at_budget",
                     "precision_at_budget"]
BUDGET_METRICS = ("recall_at_budget", "precision_at_budget")
"""Metrics at a daily alert budget (`training.alert_budget`): they need the day of each test row, so they evaluate
and gate a model but do not tune one."""


class WaitSpec(SpecModel):
    """How a scheduled run waits for its input (the raw partitions of its date, or the day's feature partition) to
    land: it checks every `poke_minutes` without holding a worker slot, and fails with the list of what is missing
    after `timeout_hours`. Runs started by hand or by an asset event do not wait: they fail at once."""

    timeout_hours: float = Field(default=12.0, gt=0, le=24 * 14)
    poke_minutes: float = Field(default=10.0, ge=0.1, le=24 * 60)
LOWER_IS_BETTER = ("log_loss", "brier")


class TimeSplitSpec(SpecModel):
    """Snapshots every `every_days`, the newest one `horizon` days before the training date (its label has just
    matured); oldest `train` snapshots train, then `validation` (early stopping, tuning), then `test`."""

    kind: Literal["time"] = "time"
    every_days: int = Field(default=7, ge=1, le=365)
    train: int = Field(default=8, ge=1, le=520)
    validation: int = Field(default=2, ge=1, le=52)
    test: int = Field(default=2, ge=1, le=52)
    purge: bool = True
    """Skip snapshots whose label window would reach into the next block (no outcome seen twice across blocks)."""


class RandomSplitSpec(SpecModel):
    """One snapshot (the training date's) split at random, stratified by label, with a fixed seed: for data with no
    time axis (a `column` label). Shares of validation and test; the rest trains."""

    kind: Literal["random"]
    validation: float = Field(default=0.2, gt=0.0, lt=0.5)
    test: float = Field(default=0.2, gt=0.0, lt=0.5)
    seed: int = 42


SplitSpec = Annotated[
    Annotated[TimeSplitSpec, Tag("time")] | Annotated[RandomSplitSpec, Tag("random")],
    kind_or("time", "random"),
]


class SearchSpace(SpecModel):
    """One tuned hyper-parameter: a numeric range, or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[str | int | float | bool] | None = None

    @field_validator("choices")
    @classmethod
    def _choices(cls, v):
        if v is not None and len(v) < 1:
            raise ValueError("choices needs at least one value")
        return v

    def problems(self) -> list[Problem]:
        out = []
        if self.choices is None and (self.low is None or self.high is None or self.low >= self.high):
            out.append(("", "give choices, or low < high"))
        if self.log and self.low is not None and self.low <= 0:
            out.append(("", "a log-scaled range needs low > 0"))
        return out


class CandidateSpec(SpecModel):
    """A model family to tune and train."""

    name: Identifier
    kind: Literal["xgboost", "lightgbm", "logistic_regression"]
    params: dict[str, str | int | float | bool] = {}
    """Fixed hyper-parameters passed to the estimator."""
    search: dict[str, SearchSpace] = {}
    """Tuned hyper-parameters (Optuna, within the tuning budget)."""


class TuningSpec(SpecModel):
    """Budget and objective of the hyper-parameter search, per candidate."""

    trials: int = Field(default=20, ge=1, le=10_000)
    timeout_seconds: int | None = Field(default=120, ge=1)
    """Wall-clock budget per candidate; the search stops at whichever of trials/timeout comes first."""
    metric: MetricName = "roc_auc"
    early_stopping_rounds: int = Field(default=50, ge=1)
    """Validation tuning: boosted trees stop adding trees when the validation loss stalls this long."""
    seed: int = 42
    sample_rows: int | None = Field(default=None, ge=1_000)
    """Tuning on the validation split: the trials fit on about this many train rows (every positive while they are
    under half of it, a seeded share of the negatives weighted up by 1 / share: `datasets.tuning_sample`), then the
    selected candidate and the baseline are refitted with their best settings on the whole train split, stopping
    early on the whole validation split (the other candidates keep their fit on the sample; the untuned references
    fit the same sample). For large sets (twelve weekly snapshots of a million customers); the AUC it costs is
    measured in docs/benchmarks.md.
    null: every trial fits every train row."""
    cv_below_rows: int | None = Field(default=50_000, ge=0)
    """A random split with fewer train + validation rows than this tunes on stratified k-fold cross-validation of
    those rows (`training.cv_folds` folds, or 5; the number of trees is tuned, not early-stopped) instead of one
    validation split; null: always the validation split. A time split always tunes on its validation snapshots
    (never shuffled into folds). Either way each study starts from known-good settings (the untuned references)."""


FairnessMetric = Literal["selection_rate_ratio", "tpr_ratio", "fpr_ratio", "auc_ratio"]


class FairnessFloorSpec(SpecModel):
    """One fairness floor of the gate: `metric` across the groups of `attribute` must be at least `min`."""

    attribute: ColumnName
    metric: FairnessMetric = "selection_rate_ratio"
    """`selection_rate_ratio` (share flagged), `tpr_ratio` (flagged among positives), `fpr_ratio` (flagged among
    negatives) or `auc_ratio`: the lowest group's value divided by the highest group's (1 = parity)."""
    min: float = Field(gt=0.0, le=1.0)
    """E.g. 0.8, the "four-fifths rule" of selection rates."""


class FairnessSpec(SpecModel):
    """Sensitive attributes: the model card shows, per group of each, the selection rate, TPR, FPR and ROC AUC on
    the test split at the flag threshold, and the disparity ratios (min/max across groups)."""

    attributes: list[ColumnName] = []
    """Feature columns holding a sensitive attribute (a categorical feature, or a numeric one with few values such
    as a 0/1 flag)."""
    flag_band: Identifier | None = None
    """The risk band (`scoring.bands`) whose threshold defines "flagged" (score >= threshold); default: the lowest
    band, i.e. every row that is not `low`."""
    min_group_rows: int = Field(default=30, ge=1)
    """Groups with fewer test rows are shown but left out of the ratios (too few rows to compare)."""
    max_groups: int = Field(default=20, ge=2, le=200)
    """An attribute with more distinct values than this is not a group column: band it into a categorical feature."""


class ConfidenceSpec(SpecModel):
    """Bootstrap confidence intervals of the test metrics (new model, baseline, champion), resampling test rows
    with replacement; the same resamples for every model, so their differences are paired."""

    resamples: int = Field(default=500, ge=0, le=10_000)
    """0: no intervals."""
    level: float = Field(default=0.95, gt=0.5, lt=1.0)
    seed: int = 0


class GateSpec(SpecModel):
    """Champion/challenger gate: absolute floors, then a margin over the current champion on the same test set."""

    mode: Literal["enabled", "dry_run", "disabled"] = "enabled"
    """`enabled`: move aliases; `dry_run`: record the verdict only; `disabled`: promote whatever clears the floors."""
    metric: MetricName = "roc_auc"
    margin: float = Field(default=0.005, ge=0.0)
    """How much better than the champion (absolute, in `metric`) the new model must be."""
    floors: dict[MetricName, float] = {"roc_auc": 0.6}
    """Minimum (or, for log_loss/brier, maximum) test values any model must reach."""
    fairness: list[FairnessFloorSpec] = []
    """Fairness floors (one mapping or a list): the least disparity ratio (min/max across the groups of a sensitive
    attribute, on the test split) a model must reach, e.g. `{attribute: age_band, metric: selection_rate_ratio,
    min: 0.8}`. The attribute must be listed in `training.fairness.attributes`."""
    beat_baselines: list[MetricName] = []
    """Metrics on which the new model must beat the logistic baseline and every rule of `training.rules` on the test
    window (strictly; e.g. [pr_auc, recall_at_budget]); a model that does not is rejected. Empty: not checked."""

    @field_validator("fairness", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, dict) else v


class RuleSpec(SpecModel):
    """A rule baseline, evaluated on the test window next to the model (what a team without a model would run): a
    row is flagged when every condition holds. Flagged rows rank above the others, and within each group by
    `rank_by` (highest first), so its PR AUC and its recall at the alert budget are defined."""

    above: dict[ColumnName, float] = {}
    """Features that must be above a value, e.g. {card_amount_ratio_28d: 3, card_first_merchant_id: 0.5}."""
    below: dict[ColumnName, float] = {}
    """Features that must be below a value."""
    equals: dict[ColumnName, str | float] = {}
    """Features that must equal a value (a category, or a number)."""
    rank_by: ColumnName | None = None
    """Numeric feature ordering the rows within the flagged and the unflagged ones (default: ties)."""

    def problems(self) -> list[Problem]:
        return [] if (self.above or self.below or self.equals) else [("", "a rule needs a condition (above, below "
                                                                          "or equals)")]

    def columns(self) -> list[str]:
        return list(dict.fromkeys([*self.above, *self.below, *self.equals, *([self.rank_by] if self.rank_by else [])]))


def _default_candidates() -> list[CandidateSpec]:
    return [CandidateSpec(name="xgboost", kind="xgboost"), CandidateSpec(name="lightgbm", kind="lightgbm"),
            CandidateSpec(name="baseline", kind="logistic_regression")]


class TrainingSpec(SpecModel):
    """Training: snapshots and split, candidates, tuning budget, evaluation and the gate."""

    schedule: str | None = "@weekly"
    model_name: Identifier | None = None
    """Registered model name; default: the use-case name."""
    split: SplitSpec = TimeSplitSpec()
    cv_folds: int = Field(default=0, ge=0, le=20)
    """Random splits only. If >= 2: the model card reports stratified k-fold cross-validated metrics of the tuned
    candidates and the untuned references on the same folds of the train + validation rows (and small tables tune
    on these folds, see `tuning.cv_below_rows`). A time split is evaluated on its later test window instead."""
    candidates: list[CandidateSpec] = Field(default_factory=_default_candidates, min_length=1)
    baseline: Identifier = "baseline"
    """Candidate every model is compared with in the model card (a logistic regression)."""
    tuning: TuningSpec = TuningSpec()
    calibration: Literal["none", "sigmoid", "isotonic", "auto"] = "auto"
    """`auto` keeps an isotonic calibration only if it lowers the validation Brier score under cross-fitting."""
    segments: list[ColumnName] = []
    """Categorical features whose values get their own metrics (a model failing one group shows)."""
    min_rows: int = Field(default=500, ge=10)
    min_positives: int = Field(default=20, ge=2)
    """Least positives (and negatives) each of train, validation and test must hold."""
    shap_sample: int = Field(default=2000, ge=100, le=100_000)
    alert_budget: float | None = Field(default=None, gt=0.0, lt=1.0)
    """Share of each day's rows analysts can review (e.g. 0.005: the top 0.5% of a day's transactions by score).
    When set, the test window is also scored as the team works: `recall_at_budget` (share of the window's positives
    among each day's top rows) and `precision_at_budget` (share of positives among those alerts), per day then
    summed, usable in `gate.floors`, `gate.metric` and `gate.beat_baselines`. A day of n rows alerts ceil(share * n)
    rows. The score table then also has the view `<table>_alerts`: each date's top rows within the budget, most
    suspicious first."""
    negative_sample: float | None = Field(default=None, gt=0.0, le=1.0)
    """Share of the negative training rows kept (a seeded sample; positives are all kept), each kept one weighing
    1 / share in the fit: a rare positive class (fraud) trains on far fewer rows, and the weights put the class
    balance back, so probabilities stay calibrated to the real base rate (validation and test are never sampled).
    Unset: every row, weight 1."""
    rules: dict[Identifier, RuleSpec] = {}
    """Rule baselines evaluated on the test window beside the logistic baseline (model card, `gate.beat_baselines`),
    e.g. {unusual_amount_new_merchant: {above: {card_amount_ratio_28d: 3, card_first_merchant_id: 0.5}}}."""
    fairness: FairnessSpec = FairnessSpec()
    confidence: ConfidenceSpec = ConfidenceSpec()
    gate: GateSpec = GateSpec()

    def problems(self) -> list[Problem]:
        out = []
        names = [c.name for c in self.candidates]
        if len(set(names)) != len(names):
            out.append(("candidates", f"candidate names must be unique, got {names}"))
        if self.baseline not in names:
            out.append(("baseline", f"{self.baseline!r} is not a candidate; candidates: {', '.join(names)}"))
        elif next(c for c in self.candidates if c.name == self.baseline).kind != "logistic_regression":
            out.append(("baseline", "the baseline must be a logistic_regression candidate"))
        if self.cv_folds == 1:
            out.append(("cv_folds", "use 0 (off) or at least 2 folds"))
        if self.cv_folds >= 2 and isinstance(self.split, TimeSplitSpec):
            out.append(("cv_folds", "a time split is never shuffled into folds: remove cv_folds (the test window "
                                    "is the evaluation), or use a random split"))
        if self.tuning.metric in BUDGET_METRICS:
            out.append(("tuning.metric", f"{self.tuning.metric} needs the day of each row, which tuning does not "
                                         "see: tune on pr_auc and gate on the budget metric"))
        if self.alert_budget is None:
            used = [("gate.metric", self.gate.metric)] + [("gate.floors", m) for m in self.gate.floors]
            used += [(f"gate.beat_baselines[{i}]", m) for i, m in enumerate(self.gate.beat_baselines)]
            out += [(path, f"{m} is measured at training.alert_budget, which is not set")
                    for path, m in used if m in BUDGET_METRICS]
        for i, floor in enumerate(self.gate.fairness):
            if floor.attribute not in self.fairness.attributes:
                out.append((f"gate.fairness[{i}].attribute", f"{floor.attribute!r} is not a sensitive attribute; "
                            f"add it to training.fairness.attributes (now {self.fairness.attributes})"))
        return out


class ReasonCodeSpec(SpecModel):
    """Per-row reason codes: the features with the largest SHAP contributions to the champion's score."""

    top: int = Field(default=3, ge=1, le=10)
    exact_share: float = Field(default=0.1, ge=0.0, le=1.0)
    """Share of rows, from the highest scores down, that get exact TreeSHAP codes (the rows analysts act on)."""
    others: Literal["approximate", "exact", "none"] = "approximate"
    """The other rows: `approximate` (Saabas, XGBoost only; LightGBM falls back to none), `exact`, or `none`."""
    exact_budget_seconds: float | None = Field(default=None, gt=0)
    """If set: time exact codes on a sample of the day's rows and extend them, from the highest scores down, to as
    many rows as fit in this many seconds (never fewer than `exact_share`). A small champion then explains every
    row; a deep one keeps exact codes where analysts act."""


class ScoringSpec(SpecModel):
    """Batch scoring into the warehouse."""

    schedule: str | None = "@daily"
    """Cron/preset schedule; the DAG also runs when the use case's feature partition is published."""
    table: Identifier | None = None
    """Warehouse table of scores; default `<use case>_scores`. Views `<table>_champion`, `<table>_latest`."""
    bands: dict[Identifier, float] = {"high": 0.3, "medium": 0.1}
    """Risk band of a score: the first band whose threshold it reaches, from the highest; below all: `low`."""
    reason_codes: ReasonCodeSpec = ReasonCodeSpec()
    chunk_rows: int = Field(default=100_000, ge=1_000, le=5_000_000)
    """Rows scored at once: peak memory depends on this, not on the partition's size."""
    columns: list[ColumnName] = []
    """Feature columns copied into the score table as they are (e.g. segments analysts group by)."""
    shadow_challenger: bool = True
    """Also score the `challenger` alias, stored with model_role='challenger' (not in the analysts' views)."""
    export_url: str | None = Field(default=None, pattern=r"^s3://[^/]+(/.*)?$")
    """Optional s3://bucket/prefix: each date's scores are also written there as Parquet."""

    @field_validator("bands")
    @classmethod
    def _bands(cls, v: dict[str, float]) -> dict[str, float]:
        if any(not 0.0 < t <= 1.0 for t in v.values()):
            raise ValueError("band thresholds must be in (0, 1]")
        if "low" in v:
            raise ValueError("'low' is the band below every threshold; do not declare it")
        return dict(sorted(v.items(), key=lambda kv: -kv[1]))


class RetrainPolicySpec(SpecModel):
    """When drift or decay requests a retraining run (check -> decide -> trigger)."""

    enabled: bool = True
    """False: monitoring records what it would request, and requests nothing (recommend only)."""
    score_psi: float = Field(default=0.25, gt=0)
    """Request when the score distribution's PSI reaches this."""
    important_features: int = Field(default=10, ge=1)
    """How many of the model's most important features (SHAP) the next rule watches."""
    drifted_important_share: float = Field(default=0.3, gt=0, le=1)
    """Request when this share of the important features has a PSI alert."""
    drifted_share: float = Field(default=0.25, gt=0, le=1)
    """Request when this share of all the model's features has a PSI alert (broad drift)."""
    auc_drop: float = Field(default=0.05, gt=0)
    """Request when the realized ROC AUC on matured labels falls this far below the test window's."""
    cooldown_days: int = Field(default=7, ge=0)
    """At most one drift-triggered request per this many days."""


class ChallengerReviewSpec(SpecModel):
    """Promoting a shadow challenger on evidence from matured outcomes."""

    action: Literal["recommend", "promote"] = "recommend"
    margin: float = Field(default=0.01, ge=0)
    """ROC AUC by which the challenger must beat the champion on the same matured rows."""
    min_labelled_rows: int = Field(default=1000, ge=10)


class MonitoringSpec(SpecModel):
    """Drift and realized-performance monitoring, after each date's scores are published."""

    schedule: str | None = None
    """Extra cron schedule; the DAG always runs when the use case's scores are published."""
    table: Identifier | None = None
    """Warehouse table of monitoring figures; default `<use case>_monitoring`."""
    psi_warn: float = Field(default=0.1, gt=0)
    psi_alert: float = Field(default=0.25, gt=0)
    ks_warn: float = Field(default=0.1, gt=0)
    ks_alert: float = Field(default=0.2, gt=0)
    unseen_warn: float = Field(default=0.01, gt=0)
    unseen_alert: float = Field(default=0.05, gt=0)
    alert_rate_ratio: float = Field(default=2.0, gt=1)
    """With `training.alert_budget`: the date's alert rate (its share of rows scored at or above the threshold the
    champion alerted at on its test days) is flagged when above budget x this or below budget / this."""
    retrain: RetrainPolicySpec = RetrainPolicySpec()
    challenger: ChallengerReviewSpec = ChallengerReviewSpec()
