"""Scheduled runs wait for late data, then fail naming what is missing; they start as soon as it has landed."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from batchml.errors import LandingError


def test_a_run_waits_for_its_raw_data_then_fails_naming_what_is_missing(churn_spec, landing_copy, small_as_of,
                                                                         isolated_home):
    from batchml.partitions import input_ready, missing_inputs

    settings = isolated_home(landing_url=landing_copy.url)
    now = dt.datetime(2026, 4, 8, 6, tzinfo=dt.UTC)
    assert input_ready(churn_spec, settings, "features", small_as_of, now - dt.timedelta(hours=1), now)
    newest = small_as_of - dt.timedelta(days=1)
    shutil.rmtree(Path(landing_copy.url) / "transactions" / f"dt={newest}")  # the day has not landed yet
    assert missing_inputs(churn_spec, settings, "features", small_as_of) == [f"transactions/dt={newest}"]
    assert not input_ready(churn_spec, settings, "features", small_as_of, now - dt.timedelta(hours=1), now)
    with pytest.raises(LandingError) as err:
        input_ready(churn_spec, settings, "features", small_as_of, now - dt.timedelta(hours=13), now)
    message = str(err.value)
    assert "churn__features" in message and f"transactions/dt={newest}" in message
    assert "wait.timeout_hours=12" in message and "Land them" in message


def test_scoring_waits_for_the_feature_partition_and_training_for_matured_labels(churn_spec, training_landing,
                                                                                  isolated_home):
    from batchml.partitions import missing_inputs

    settings = isolated_home(landing_url=training_landing.url)
    assert missing_inputs(churn_spec, settings, "scoring", dt.date(2026, 7, 1)) == ["features/churn/dt=2026-07-01"]
    # training on 07-01: the newest snapshot (06-01) has its raw data and its labels (to 06-30) landed
    assert missing_inputs(churn_spec, settings, "training", dt.date(2026, 7, 1)) == []
    # the landing zone ends on 07-19: training on 07-22 still waits for the labels of its newest snapshot
    missing = missing_inputs(churn_spec, settings, "training", dt.date(2026, 7, 22))
    assert missing == ["churn_events/dt=2026-07-20", "churn_events/dt=2026-07-21"]
