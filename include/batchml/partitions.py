"""Dates and partitions, without Spark: the instant a date's features are computed at, which raw partitions a run
reads, which snapshot partition applies, and whether they have all landed.

The rule everything follows: features as of day D use only data strictly before D 00:00 UTC. An events source is
read over its longest window (`[D - w, D)`), an entity source and its leaving events over every day landed before
D, and a snapshot source through its newest partition landed before D.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from batchml.errors import LandingError
from batchml.results import LandedRaw
from batchml.specs import RandomSplitSpec, UseCaseSpec
from batchml.storage import Landing, partition_name

log = logging.getLogger(__name__)


def as_of_timestamp(as_of: dt.date) -> dt.datetime:
    """The instant features are computed at: midnight UTC at the start of `as_of`."""
    return dt.datetime(as_of.year, as_of.month, as_of.day, tzinfo=dt.UTC)


def window_days(as_of: dt.date, days: int) -> list[dt.date]:
    """The `days` days before `as_of`, oldest first."""
    return [as_of - dt.timedelta(days=i) for i in range(days, 0, -1)]


def event_days(spec: UseCaseSpec, as_of: dt.date) -> dict[str, list[dt.date]]:
    """Partitions of each aggregated events source the feature job reads for `as_of` (its longest window)."""
    out: dict[str, list[dt.date]] = {}
    for agg in spec.features.aggregates:
        out[agg.source] = sorted(set(out.get(agg.source, [])) | set(window_days(as_of, max(agg.windows))))
    return out


def newest_snapshot(spec: UseCaseSpec, source: str, landed: list[dt.date], as_of: dt.date, where: object) -> dt.date:
    """The partition of a snapshot source that a run as of `as_of` reads: the newest of `landed` (the days landed
    before `as_of`, oldest first); LandingError when there is none."""
    if not landed:
        raise LandingError(
            f"no snapshot of {source!r} landed before {as_of} under {where}: land one first "
            f"(batchml ingest {spec.name} {source} FILE --date YYYY-MM-DD)"
        )
    return landed[-1]


def snapshot_day(raw_root: Path, spec: UseCaseSpec, as_of: dt.date) -> dt.date:
    """The partition of the snapshot entity source that features as of `as_of` read."""
    source = spec.entity.source
    return newest_snapshot(spec, source, Landing(str(raw_root)).landed_days(source, before=as_of), as_of, raw_root)


def event_entity_days(spec: UseCaseSpec, as_of: dt.date) -> dict[str, list[dt.date]]:
    """Event entity: every partition the feature job for `as_of` reads, per source (the scored day, the history
    blocks' ranges, the matured labels'; batchml.event_features.EventFeatureJob.reads lists them with their use)."""
    from batchml.event_features import job_for_spec

    return job_for_spec(spec, Path("."), as_of).partitions_needed()


def partitions_read(spec: UseCaseSpec, landing: Landing, as_of: dt.date) -> dict[str, list[dt.date]]:
    """Every partition of every source the feature job reads for `as_of`: windows of events sources, the whole
    landed history of the entity source and its leaving events, the newest partition of a snapshot source (an
    event entity: see `event_entity_days`)."""
    if spec.is_event:
        return event_entity_days(spec, as_of)
    needed = event_days(spec, as_of)
    for name in spec.sources_read():
        src = spec.sources[name]
        if src.kind == "snapshot":
            needed[name] = [newest_snapshot(spec, name, landing.landed_days(name, before=as_of), as_of, landing.url)]
        elif name not in needed:
            needed[name] = landing.landed_days(name, before=as_of)
    return needed


def required_partitions(spec: UseCaseSpec, as_of: dt.date) -> dict[str, list[dt.date]]:
    """Partitions that must have landed before features as of `as_of` can be built: every day of each events
    window, and the newest day (`as_of - 1`) of the entity and leaving-event sources (their earlier days were
    required by earlier dates). An event entity: every partition its job reads (`event_entity_days`)."""
    if spec.is_event:
        return event_entity_days(spec, as_of)
    newest = as_of - dt.timedelta(days=1)
    needed = {name: [newest] for name in spec.sources_read() if spec.sources[name].kind != "snapshot"}
    needed.update(event_days(spec, as_of))
    return needed


def missing_partitions(spec: UseCaseSpec, landing: Landing, as_of: dt.date) -> dict[str, list[dt.date]]:
    """The required partitions that have not landed, per source (empty when everything is there)."""
    missing = {s: landing.missing_partitions(s, days) for s, days in required_partitions(spec, as_of).items()}
    return {s: days for s, days in missing.items() if days}


def check_landed(spec: UseCaseSpec, landing: Landing, as_of: dt.date) -> dict[str, list[dt.date]]:
    """Every partition the feature job reads for `as_of`; LandingError listing every required one not landed (or
    naming the snapshot source that has no partition before `as_of`)."""
    missing = missing_partitions(spec, landing, as_of)
    if missing:
        detail = "; ".join(
            f"{s}: {len(days)} missing ({', '.join(d.isoformat() for d in days[:5])}{', ...' if len(days) > 5 else ''})"
            for s, days in missing.items()
        )
        raise LandingError(
            f"Raw partitions needed for features as of {as_of} have not landed under {landing.url}: {detail}. "
            "Land them (or backfill the ingestion), then clear this task."
        )
    return partitions_read(spec, landing, as_of)


def landed_raw(spec: UseCaseSpec, settings, as_of: dt.date) -> LandedRaw:
    """Check that every raw partition the feature run for `as_of` needs has landed, and make them readable locally
    (an S3 landing zone is mirrored by ETag: Spark's bundled jars cannot read s3a://)."""
    landing = Landing(settings.landing_url)
    needed = check_landed(spec, landing, as_of)
    raw_root = landing.local_view(needed, settings.staging_root / "landing_mirror")
    return LandedRaw(as_of=as_of, raw_root=str(raw_root), partitions=needed)


# Training snapshots ------------------------------------------------------------------------------------------------

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class SnapshotPlan:
    """Snapshot dates of each split of a training run, oldest first."""

    train: list[dt.date]
    valid: list[dt.date]
    test: list[dt.date]

    def __getitem__(self, split: str) -> list[dt.date]:
        return getattr(self, split)

    @property
    def all(self) -> list[dt.date]:
        return sorted({s for name in SPLITS for s in self[name]})


def snapshot_plan(spec: UseCaseSpec, training_date: dt.date) -> SnapshotPlan:
    """The snapshots a training run on `training_date` uses. A time split: every `every_days`, the newest test
    snapshot `training_date - horizon` (its labels have just matured), then validation and train further back, with
    `purge` gaps so that no label window reaches into the next block. A random split: the training date's snapshot,
    shared by every split (its rows are split instead)."""
    split = spec.training.split
    if isinstance(split, RandomSplitSpec):
        return SnapshotPlan([training_date], [training_date], [training_date])
    horizon, step = spec.horizon_days, split.every_days
    gap = math.ceil(horizon / step) - 1 if split.purge else 0  # snapshots skipped between blocks
    newest = training_date - dt.timedelta(days=horizon)
    plan: dict[str, list[dt.date]] = {}
    k = 0
    for name, count in (("test", split.test), ("valid", split.validation), ("train", split.train)):
        plan[name] = sorted(newest - dt.timedelta(days=step * (k + i)) for i in range(count))
        k += count + gap
    return SnapshotPlan(**plan)


# Waiting for input ---------------------------------------------------------------------------------------------------


def missing_inputs(spec: UseCaseSpec, settings, kind: str, day: dt.date) -> list[str]:
    """What a run of DAG `kind` (features, scoring, training) for `day` needs and has not landed yet, by name."""
    landing = Landing(settings.landing_url)
    if kind == "features":
        missing = [f"{s}/{partition_name(d)}" for s, days in missing_partitions(spec, landing, day).items()
                   for d in days]
        missing += [f"{s} (no snapshot before {day})" for s in spec.sources_read()
                    if spec.sources[s].kind == "snapshot" and not landing.landed_days(s, before=day)]
        return missing
    if kind == "scoring":
        from batchml.storage import feature_partition_file

        path = feature_partition_file(settings.features_root, spec.name, day)
        return [] if path.exists() else [f"features/{spec.name}/{partition_name(day)}"]
    if kind == "training":
        newest = snapshot_plan(spec, day).test[-1]
        missing = missing_inputs(spec, settings, "features", newest)
        if spec.horizon_days:  # the labels of the newest snapshot mature on the training date
            label_days = [newest + dt.timedelta(days=i) for i in range((day - newest).days)]
            missing += [f"{spec.label.source}/{partition_name(d)}"
                        for d in landing.missing_partitions(spec.label.source, label_days)]
        return missing
    raise ValueError(f"unknown DAG kind {kind!r}")


def input_ready(spec: UseCaseSpec, settings, kind: str, day: dt.date, waiting_since: dt.datetime,
                now: dt.datetime | None = None) -> bool:
    """Whether a scheduled run can start: True when its input has landed, False while it may still wait, and a
    LandingError naming what is missing once it has waited `spec.wait.timeout_hours`."""
    missing = missing_inputs(spec, settings, kind, day)
    if not missing:
        return True
    now = now or dt.datetime.now(dt.UTC)
    waited = now - waiting_since
    if waited >= dt.timedelta(hours=spec.wait.timeout_hours):
        shown = ", ".join(missing[:8]) + (", ..." if len(missing) > 8 else "")
        raise LandingError(
            f"Input of {spec.dag_id(kind)} for {day} has not landed under {settings.landing_url} after waiting "
            f"{waited.total_seconds() / 3600:.1f} h (spec wait.timeout_hours={spec.wait.timeout_hours}): "
            f"{len(missing)} missing: {shown}. Land them (or backfill the ingestion), then clear this task."
        )
    log.info("Waiting for %d input(s) of %s for %s (e.g. %s); giving up after %.1f h", len(missing),
             spec.dag_id(kind), day, missing[0], spec.wait.timeout_hours)
    return False
