"""Training sets: feature snapshots joined with labels that had matured by the training date, checked and split.
The snapshots a training date needs are built first where missing (`ensure_snapshots`, the feature DAG's steps).

Point in time, twice over:
  * features of snapshot s come from the published partition `features/<use case>/dt=s/` (data before s only);
  * its label is "an event of the label source in [s, s + horizon)", read only from label events that happened
    before the training date T, and only snapshots with s + horizon <= T are used, so no label comes from the future.
The split is strictly by time (`partitions.snapshot_plan`): the oldest snapshots train, the next validate (early
stopping, tuning), the newest test; a snapshot table with a label column is split at random instead, stratified.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batchml.errors import BatchMLError
from batchml.partitions import SPLITS, as_of_timestamp, snapshot_day, snapshot_plan
from batchml.results import SnapshotsReady, StagedFeatures, TrainingSetRef
from batchml.settings import Settings
from batchml.specs import AS_OF_COLUMN, ColumnLabelSpec, RandomSplitSpec, UseCaseSpec
from batchml.storage import DATA_FILE, Landing, feature_partition_dir, read_partition

log = logging.getLogger(__name__)

LABEL = "label"
WEIGHT = "weight"
"""Column of a down-sampled training split: how many rows of the full split each row stands for."""


class TrainingDataError(BatchMLError):
    """The training data cannot give an honest model (too few rows, one class, NaN, missing columns, ...)."""


def ensure_snapshots(spark, spec: UseCaseSpec, settings: Settings, training_date: dt.date,
                     label: str) -> SnapshotsReady:
    """Build, check and publish every planned snapshot's feature partition that is missing (the feature DAG's steps,
    in one Spark session); partitions already published are left as they are. `spark` is a session, or a function
    returning a context manager of one, called only when a snapshot is missing (a JVM start saved otherwise).

    The raw partitions of all missing snapshots are checked first, together (a bad one fails the step before any
    Spark job). A snapshot's feature checks and publish run in a worker thread while the next snapshot's Spark job
    runs (the checks are Python, the job mostly the JVM): a failed check stops the loop before the next snapshot is
    checked, and is raised as the feature DAG would raise it."""
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import ExitStack, nullcontext

    from batchml import validation
    from batchml.features import build_feature_partition, publish_feature_partition
    from batchml.partitions import landed_raw

    snapshots = snapshot_plan(spec, training_date).all
    missing = [s for s in snapshots
               if not (feature_partition_dir(settings.features_root, spec.name, s) / DATA_FILE).exists()]

    landed = {as_of: landed_raw(spec, settings, as_of) for as_of in missing}
    if len(landed) > 1:
        # every distinct raw partition the missing snapshots read, checked once up front: a few batched GX runs per
        # source instead of a few per snapshot (each snapshot's own check below then finds them validated)
        union: dict[str, set[dt.date]] = {}
        for one in landed.values():
            for source, days in one.partitions.items():
                union.setdefault(source, set()).update(days)
        newest = landed[missing[-1]]
        validation.validate_raw_partitions(spec, settings, newest.model_copy(
            update={"partitions": {source: sorted(days) for source, days in union.items()}}), label)

    def check_and_publish(staged: StagedFeatures, i: int, started: float) -> None:
        checked = validation.validate_feature_partition(spec, settings, staged, label)
        publish_feature_partition(spec, settings, checked, label)
        log.info("Snapshot %d/%d (%s) built and published in %.0f s", i, len(missing), staged.as_of,
                 time.perf_counter() - started)

    with ExitStack() as stack:
        session, previous = None, None
        checks = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-checks"))
        for i, as_of in enumerate(missing, start=1):
            if session is None:
                opened = spark() if callable(spark) and not hasattr(spark, "sparkContext") else nullcontext(spark)
                session = stack.enter_context(opened)
            started = time.perf_counter()
            checked = validation.validate_raw_partitions(spec, settings, landed[as_of], label)
            staged = build_feature_partition(session, spec, settings, checked, label)
            if previous is not None:
                previous.result()  # the previous snapshot's checks: raise their failure before going on
            previous = checks.submit(check_and_publish, staged, i, started)
        if previous is not None:
            previous.result()
    return SnapshotsReady(training_date=training_date, snapshots=snapshots, built=missing)


# Snapshots and labels --------------------------------------------------------------------------------------------


def first_outcome_day(spec: UseCaseSpec, snapshot: dt.date) -> dt.date:
    """The first landed day of the label source that can hold outcomes of `snapshot`: the snapshot's own day, or for
    an event entity the day before it (a date's partition holds the events of the day before)."""
    return snapshot - dt.timedelta(days=1) if spec.is_event else snapshot


def label_snapshots(
    spec: UseCaseSpec, raw_root: Path, snapshots: list[dt.date], training_date: dt.date
) -> pd.DataFrame:
    """(entity, as_of_date) pairs with a label event in [as_of, as_of + horizon), from events before the training
    date only. Entities absent from the result have label 0. For an event entity, the (event, as_of_date) pairs of
    the positive events of each snapshot (the events of the day before it), by the spec's label: an outcome row
    matching `label.where` within `horizon_days` of the event's time (`label.event_timestamp`)."""
    import pyarrow.dataset as ds

    horizon = dt.timedelta(days=spec.horizon_days)
    late = [s for s in snapshots if s + horizon > training_date]
    if late:
        raise TrainingDataError(
            f"labels of snapshots {late} have not matured by the training date {training_date} "
            f"(horizon {spec.label.horizon_days} days)"
        )
    source = spec.label.source
    ts_col = spec.sources[source].timestamp
    key = spec.entity.key
    end = as_of_timestamp(training_date)
    first = first_outcome_day(spec, min(snapshots))
    days = [d for d in Landing(str(raw_root)).landed_days(source, before=training_date) if d >= first]
    files = [str(p) for d in days for p in (raw_root / source / f"dt={d.isoformat()}").glob("*.parquet")]
    if not files:
        return pd.DataFrame({key: pd.Series(dtype="str"), AS_OF_COLUMN: pd.Series(dtype="object")})
    hits = []
    if spec.is_event:
        label = spec.label
        condition = ds.field(ts_col) < end
        for col, values in label.where.items():
            condition = condition & ds.field(col).isin(values)
        rows = ds.dataset(files, format="parquet").to_table(columns=[label.key, ts_col, label.event_timestamp],
                                                            filter=condition).to_pandas()
        event_t, outcome_t = rows[label.event_timestamp], rows[ts_col]
        rows = rows[(outcome_t >= event_t) & (outcome_t < event_t + horizon)]
        for s in snapshots:
            start = pd.Timestamp(as_of_timestamp(s))
            of_day = rows[(rows[label.event_timestamp] >= start - pd.Timedelta(days=1))
                          & (rows[label.event_timestamp] < start)]
            hits.append(pd.DataFrame({key: of_day[label.key].unique(), AS_OF_COLUMN: s}))
        return pd.concat(hits, ignore_index=True).drop_duplicates()
    events = ds.dataset(files, format="parquet").to_table(columns=[key, ts_col], filter=ds.field(ts_col) < end)
    events = events.to_pandas()
    for s in snapshots:
        start = pd.Timestamp(as_of_timestamp(s))
        in_window = events[(events[ts_col] >= start) & (events[ts_col] < start + horizon)]
        hits.append(pd.DataFrame({key: in_window[key].unique(), AS_OF_COLUMN: s}))
    return pd.concat(hits, ignore_index=True).drop_duplicates()


def event_labels(spec: UseCaseSpec, raw_root: Path, events: pd.DataFrame, training_date: dt.date) -> np.ndarray:
    """Event entity: the label (0/1) of each row of `events` (its key and timestamp): 1 when an outcome row of
    `label.source` refers to it (`label.key`), matches `label.where` and happened in `[t, t + horizon)`; outcome
    rows on or after the training date are never read. Raises TrainingDataError when a label has not matured
    (`t + horizon` after the training date): it could still turn positive."""
    import pyarrow.dataset as ds

    label, key, ts = spec.label, spec.entity.key, spec.event_timestamp
    horizon = pd.Timedelta(days=label.horizon_days)
    end = pd.Timestamp(as_of_timestamp(training_date))
    times = pd.to_datetime(events[ts], utc=True)
    if len(events) and times.max() + horizon > end:
        raise TrainingDataError(f"labels of events up to {times.max()} mature {horizon.days} days later, after the "
                                f"training date {training_date}: train on earlier days")
    source = spec.sources[label.source]
    first = times.min().date() if len(events) else training_date
    days = [d for d in Landing(str(raw_root)).landed_days(label.source, before=training_date) if d >= first]
    files = [str(p) for d in days for p in (raw_root / label.source / f"dt={d.isoformat()}").glob("*.parquet")]
    out = np.zeros(len(events), dtype="int8")
    if not files:
        return out
    condition = ds.field(source.timestamp) < end
    for col, values in label.where.items():
        condition = condition & ds.field(col).isin(values)
    rows = ds.dataset(files, format="parquet").to_table(columns=[label.key, source.timestamp],
                                                        filter=condition).to_pandas()
    joined = pd.DataFrame({key: events[key].to_numpy(), "__t": times.to_numpy(), "__i": np.arange(len(events))})
    joined = joined.merge(rows.rename(columns={label.key: key, source.timestamp: "__o"}), on=key)
    within = (joined["__o"] >= joined["__t"]) & (joined["__o"] < joined["__t"] + horizon)
    out[joined.loc[within, "__i"].unique()] = 1
    return out


def downsample_negatives(frame: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """Every positive row and a seeded `share` of the negative ones, with a `weight` column (1 for positives,
    1 / share for negatives) so that weighted sums (the fit's loss, the base rate) are those of the full split."""
    negatives = frame.index[frame[LABEL] == 0]
    rng = np.random.default_rng(seed)
    keep = rng.random(len(negatives)) < share
    out = frame.drop(index=negatives[~keep]).copy()
    out[WEIGHT] = np.where(out[LABEL] == 1, 1.0, 1.0 / share)
    return out.reset_index(drop=True)


def tuning_sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """About `rows` rows of a train split for the tuning trials to fit on (the frame itself when not larger).

    While the positives are at most half of `rows`: every positive and a seeded share of the negatives, these
    weighted up by 1 / share (times any weight they carry: `downsample_negatives`), so the trials see every row of
    the rare class and the real class balance. With more positives: the same seeded share of every row, weights as
    they are. One seeded draw per row (Bernoulli): the size is about `rows`, the same for the same frame and seed."""
    if len(frame) <= rows:
        return frame
    positive = frame[LABEL].to_numpy() == 1
    n_pos = int(positive.sum())
    draw = np.random.default_rng(seed).random(len(frame))
    if n_pos <= rows // 2:
        share = (rows - n_pos) / (len(frame) - n_pos)
        keep = positive | (draw < share)
        scale = np.where(positive, 1.0, 1.0 / share)[keep]
    else:
        keep = draw < rows / len(frame)
        scale = None
    out = frame.loc[keep].copy()
    if scale is not None:
        out[WEIGHT] = scale * (out[WEIGHT].to_numpy(dtype="float64") if WEIGHT in out.columns else 1.0)
    return out.reset_index(drop=True)


def column_labels(spec: UseCaseSpec, raw_root: Path, snapshot: dt.date) -> pd.DataFrame:
    """(entity, label) of a `column` label, from the snapshot partition the features of `snapshot` came from.

    Raises TrainingDataError unless the column holds exactly two values, one of them `label.positive`.
    """
    label = spec.label
    assert isinstance(label, ColumnLabelSpec)
    key = spec.entity.key
    day = snapshot_day(raw_root, spec, snapshot)
    table = read_partition(raw_root, spec.entity.source, day, columns=[key, label.column]).to_pandas()
    where = f"{spec.path or spec.name}: label.column {label.column!r} (snapshot dt={day})"
    values = table[label.column]
    if values.isna().any():
        raise TrainingDataError(f"{where}: {int(values.isna().sum())} rows have no label; drop or fix them")
    problem = label.problem_with(values.unique())
    if problem:
        raise TrainingDataError(f"{where}: {problem}")
    return pd.DataFrame({key: table[key], LABEL: (values.astype(str) == str(label.positive)).astype("int8")})


# Training sets ---------------------------------------------------------------------------------------------------


@dataclass
class TrainingSet:
    """Feature rows with labels, per split, plus what is needed to reproduce and audit them."""

    frames: dict[str, pd.DataFrame]
    features: list[str]
    categorical: list[str]
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def numeric(self) -> list[str]:
        return [f for f in self.features if f not in self.categorical]

    def X(self, split: str) -> pd.DataFrame:
        return self.frames[split][self.features]

    def y(self, split: str) -> np.ndarray:
        return self.frames[split][LABEL].to_numpy()

    def weights(self, split: str) -> np.ndarray | None:
        """Row weights of a down-sampled split (`training.negative_sample`), or None: every row weighs 1."""
        frame = self.frames[split]
        return frame[WEIGHT].to_numpy(dtype="float64") if WEIGHT in frame.columns else None

    def save(self, folder: Path) -> None:
        import json

        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in self.frames.items():
            frame.to_parquet(folder / f"{name}.parquet", index=False)
        meta = {"features": self.features, "categorical": self.categorical, "lineage": self.lineage}
        (folder / "training_set.json").write_text(json.dumps(meta, indent=2, default=str))

    @classmethod
    def load(cls, folder: Path) -> TrainingSet:
        import json

        meta = json.loads((folder / "training_set.json").read_text())
        frames = {name: pd.read_parquet(folder / f"{name}.parquet") for name in SPLITS}
        return cls(frames, meta["features"], meta["categorical"], meta["lineage"])


def content_hash(frames: dict[str, pd.DataFrame]) -> str:
    """A hash of the rows and values of every split (independent of file encoding)."""
    digest = hashlib.sha256()
    for name in SPLITS:
        frame = frames[name]
        digest.update(name.encode())
        digest.update(",".join(frame.columns).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _check_frame(spec: UseCaseSpec, name: str, frame: pd.DataFrame, features: list[str], numeric: list[str]) -> None:
    rows, pos = len(frame), int(frame[LABEL].sum())
    if rows < spec.training.min_rows:
        raise TrainingDataError(
            f"{name} split has {rows} rows, fewer than training.min_rows={spec.training.min_rows}: "
            "widen the snapshot window (training.split) or check the feature partitions"
        )
    if pos < spec.training.min_positives or rows - pos < spec.training.min_positives:
        raise TrainingDataError(
            f"{name} split has {pos} positive and {rows - pos} negative labels; each needs at least "
            f"training.min_positives={spec.training.min_positives} (a single-class label cannot train or test a model)"
        )
    values = frame[numeric].to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        counts = {col: int(n) for col, n in zip(numeric, bad.sum(axis=0), strict=True) if n}
        raise TrainingDataError(f"{name} split has NaN or infinite feature values: {counts}")
    nulls = frame[features].isna().sum()
    if nulls.any():
        raise TrainingDataError(f"{name} split has missing values: {nulls[nulls > 0].to_dict()}")


def random_split(frame: pd.DataFrame, split: RandomSplitSpec) -> dict[str, pd.DataFrame]:
    """Stratified (by label) random split into train/valid/test with a fixed seed; same input, same rows."""
    from sklearn.model_selection import train_test_split

    # the feature partition is sorted by key, so the split does not depend on file order
    rest, test = train_test_split(frame, test_size=split.test, stratify=frame[LABEL], random_state=split.seed)
    train, valid = train_test_split(rest, test_size=split.validation / (1 - split.test), stratify=rest[LABEL],
                                    random_state=split.seed + 1)
    return {"train": train.reset_index(drop=True), "valid": valid.reset_index(drop=True),
            "test": test.reset_index(drop=True)}


def build_training_set(
    spec: UseCaseSpec, features_root: Path, raw_root: Path, training_date: dt.date
) -> TrainingSet:
    """Join the published feature partitions of every planned snapshot with matured labels; check and split."""
    plan = snapshot_plan(spec, training_date)
    columns = spec.feature_columns()
    features = list(columns)
    categorical = [c for c, kind in columns.items() if kind == "categorical"]
    numeric = [c for c in features if c not in categorical]
    key = spec.entity.key
    stamp = [spec.event_timestamp] if spec.is_event else []  # an event's time: its label window starts there
    all_snapshots = plan.all
    missing = [s for s in all_snapshots if not (feature_partition_dir(features_root, spec.name, s) / DATA_FILE).exists()]
    if missing:
        raise TrainingDataError(
            f"feature partitions missing for snapshots {[s.isoformat() for s in missing]} under "
            f"{features_root / spec.name}: run the feature DAG for those dates (the training DAG's "
            "ensure_feature_snapshots task builds them)"
        )
    def read(s: dt.date) -> tuple[pd.DataFrame, str]:
        path = feature_partition_dir(features_root, spec.name, s) / DATA_FILE
        frame = pd.read_parquet(path)
        absent = [c for c in [key, *stamp, *features] if c not in frame.columns]
        if absent:
            raise TrainingDataError(f"{path}: feature columns {absent} are missing; rebuild this partition")
        frame[AS_OF_COLUMN] = s
        return frame[[key, AS_OF_COLUMN, *stamp, *features]], str(path)

    frames: dict[str, pd.DataFrame] = {}
    partitions: dict[str, list[str]] = {}
    split = spec.training.split
    if isinstance(split, RandomSplitSpec):
        frame, path = read(training_date)
        joined = frame.merge(column_labels(spec, raw_root, training_date), on=key, how="left")
        if joined[LABEL].isna().any():
            raise TrainingDataError(f"{path}: {int(joined[LABEL].isna().sum())} entities have no label row")
        joined[LABEL] = joined[LABEL].astype("int8")
        for name, part in random_split(joined, split).items():
            _check_frame(spec, name, part, features, numeric)
            frames[name], partitions[name] = part, [path]
    else:
        labels = None
        if not spec.is_event:
            labels = label_snapshots(spec, raw_root, all_snapshots, training_date)
            labels[LABEL] = 1
        for name in SPLITS:
            snapshots = [read(s) for s in plan[name]]
            partitions[name] = [path for _, path in snapshots]
            joined = pd.concat([frame for frame, _ in snapshots], ignore_index=True)
            if labels is None:  # an event entity: each event's outcome, once matured
                joined[LABEL] = event_labels(spec, raw_root, joined, training_date)
            else:
                joined = joined.merge(labels, on=[key, AS_OF_COLUMN], how="left")
                joined[LABEL] = joined[LABEL].fillna(0).astype("int8")
            _check_frame(spec, name, joined, features, numeric)
            frames[name] = joined
    sampled = spec.training.negative_sample
    if sampled is not None:
        full = frames["train"]
        frames["train"] = downsample_negatives(full, sampled, spec.training.tuning.seed)
        log.info("Train split down-sampled: %d of %d negative rows kept (weight %.1f)",
                 int((frames["train"][LABEL] == 0).sum()), int((full[LABEL] == 0).sum()), 1 / sampled)
    lineage = {
        "training_date": training_date.isoformat(),
        "split": split.kind,
        "snapshots": {name: [s.isoformat() for s in plan[name]] for name in SPLITS},
        "partitions": partitions,
        "rows": {name: len(f) for name, f in frames.items()},
        # weighted: a down-sampled train split shows the rate of the rows it stands for
        "label_rate": {name: round(float(np.average(f[LABEL], weights=f[WEIGHT] if WEIGHT in f else None)), 5)
                       for name, f in frames.items()},
        "negative_sample": sampled,
        "data_hash": content_hash(frames),
        "horizon_days": spec.horizon_days,
    }
    log.info("Training set for %s: %s rows, label rates %s", spec.name, lineage["rows"], lineage["label_rate"])
    return TrainingSet(frames, features, categorical, lineage)


def prepare_training_set(spec: UseCaseSpec, settings: Settings, training_date: dt.date, folder: Path) -> TrainingSetRef:
    """The training DAG's step: join snapshots with matured labels, check them, split, save into the run folder."""
    landing = Landing(settings.landing_url)
    # labels come from the label events, or from the snapshot itself (a label column)
    label_source = spec.entity.source if spec.horizon_days == 0 else spec.label.source
    days = {label_source: landing.landed_days(label_source, before=training_date)}
    raw_root = landing.local_view(days, settings.staging_root / "landing_mirror")
    ts = build_training_set(spec, settings.features_root, raw_root, training_date)
    ts.save(folder / "data")
    lineage = ts.lineage
    return TrainingSetRef(run_dir=str(folder), training_date=training_date, rows=lineage["rows"],
                          label_rate=lineage["label_rate"], data_hash=lineage["data_hash"])
