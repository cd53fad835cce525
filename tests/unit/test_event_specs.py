"""Specs of an event entity (issue 17, specs/fraud.yaml): each event scored as of its own time, history
features, an outcome label. The example is valid; every mistake names the file, the dotted field and the reason;
population specs are unaffected."""

from pathlib import Path

import pytest
import yaml

from batchml.errors import SpecError
from batchml.specs import EventOutcomeLabelSpec, load_spec

REPO = Path(__file__).resolve().parents[2]
FRAUD = REPO / "specs" / "fraud.yaml"


def _variant(tmp_path: Path, source: Path, edit) -> Path:
    data = yaml.safe_load(source.read_text())
    edit(data)
    path = tmp_path / source.name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _set(data: dict, dotted: str, value) -> None:
    """Set (or, with None, delete) a dotted key; `features.history.0.hours` indexes lists."""
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[int(key)] if isinstance(data, list) else data[key]
    if isinstance(data, list):
        data[int(last)] = value
    elif value is None:
        del data[last]
    else:
        data[last] = value


def test_the_fraud_example_is_an_event_use_case():
    spec = load_spec(FRAUD)
    assert spec.is_event and not spec.is_snapshot
    assert spec.entity.key == "transaction_id" and spec.event_timestamp == "event_ts"
    assert spec.entity.leaves_on is None
    assert isinstance(spec.label, EventOutcomeLabelSpec) and spec.horizon_days == 30
    assert spec.features.tenure is False, "an event entity's tenure defaults to false"
    # the feature table: static, numeric, history blocks, hour_of_day; the same order the Spark job writes
    assert list(spec.feature_columns()) == list(spec.event_features.feature_names())
    assert "tenure_days" not in spec.feature_columns()
    assert spec.feature_columns()["merchant_label_rate_14d"] == "share"
    # the card block reads 28 days back (usual); the merchant rate reads 14 days ending 30 days back
    assert spec.lookback_days == 30 + 14
    assert spec.sources_read() == ["card_transactions", "chargebacks"]
    assert spec.training.alert_budget == 0.005 and spec.training.gate.beat_baselines == ["pr_auc", "recall_at_budget"]


def test_a_label_without_kind_is_an_outcome_label_for_an_event_entity(tmp_path):
    spec = load_spec(_variant(tmp_path, FRAUD, lambda d: _set(d, "label.kind", None)))
    assert spec.label.kind == "event_outcome"


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("entity.source", "cards", "entity.source: source 'cards' is of kind 'entity', expected 'events'"),
        ("entity.kind", "evnt", "entity: kind must be one of 'population', 'event'"),
        ("entity.leaves_on", "chargebacks", "entity.leaves_on: unknown key; valid keys: kind, key, source"),
        ("sources.card_transactions.columns.transaction_id", {"type": "string"},
         "entity.key: column 'transaction_id' of 'card_transactions' must be declared unique: true"),
        ("features.tenure", True, "features.tenure: an event has no tenure"),
        ("features.aggregates", [{"source": "card_transactions", "prefix": "txn", "windows": [7]}],
         "features.aggregates: aggregates are per entity as of a date; an event entity uses features.history"),
        ("features.fill", {"amount": 0}, "features.fill: filling nulls is not supported for an event entity"),
        ("sources.card_transactions.columns.channel", {"type": "string", "nullable": True},
         "features.static[0]: column 'channel' of 'card_transactions' is nullable and an event entity cannot fill"),
        ("features.static", ["channel", "hour_of_day"],
         "features.static[1]: 'hour_of_day' is not a column of source 'card_transactions'"),
        ("features.history.0.group_by", "card", "features.history[0].group_by: 'card' is not a column of source "
                                                "'card_transactions'"),
        ("features.history.0.sum", ["channel"],
         "features.history[0].sum[0]: column 'channel' of 'card_transactions' has type 'string'"),
        ("features.history.0.usual", {"column": "amount", "days": 400}, "features.history[0].usual.days"),
        ("features.history.0.hours", [1, 24, 500], "features.history[0].hours: window 500 h is longer than "
                                                   "lookback_days (7 days = 168 h)"),
        ("features.history.0.first_seen", ["card_id"], "features.history[0].first_seen: 'card_id' is the group"),
        ("features.history.1.prefix", "card", "features.history[1].prefix: prefix 'card' is used by another block"),
        ("features.history.1.group_by", "channel",
         "features.history[1].label_rate: 'channel' is not a column of source 'chargebacks'"),
        ("label.kind", "event_within_horizon", "label.key: unknown key; valid keys: kind, name, source, horizon_days"),
        ("label.where", {"reason": ["fraud"]}, "label.where.reason: values ['fraud'] are not in the column's allowed"),
        ("label.where", {"reason": []}, "label.where.reason: list the values that count"),
        ("label.key", "txn_id", "label.key: 'txn_id' is not a column of source 'chargebacks'"),
        ("label.event_timestamp", "chargeback_ts",
         "label.event_timestamp: 'chargeback_ts' is the outcome's own time"),
        ("label.source", "card_transactions",
         "label.source: the outcome rows must come from another source than the scored events"),
        ("label.source", "cards", "label.source: source 'cards' is of kind 'entity', expected 'events'"),
        ("training.split", {"kind": "random"}, "training.split: an event label is split by time"),
        ("training.segments", ["amount"], "training.segments[0]: 'amount' is not a static feature"),
        ("scoring.columns", ["tenure_days"], "scoring.columns[0]: 'tenure_days' is not a feature column"),
        ("training.alert_budget", None, "training.gate.floors: recall_at_budget is measured at "
                                        "training.alert_budget, which is not set"),
        ("training.tuning.metric", "recall_at_budget", "training.tuning.metric: recall_at_budget needs the day"),
        ("training.rules.unusual_amount_new_merchant.rank_by", "amount_ratio",
         "training.rules.unusual_amount_new_merchant.rank_by: 'amount_ratio' is not a feature column"),
        ("training.rules.unusual_amount_new_merchant.above", {"channel": 1},
         "training.rules.unusual_amount_new_merchant.above.channel: 'channel' is categorical"),
        ("training.rules.unusual_amount_new_merchant.above", {}, "training.rules.unusual_amount_new_merchant: a "
                                                                 "rule needs a condition"),
    ],
)
def test_a_bad_event_spec_names_file_field_and_reason(tmp_path, field, value, fragment):
    path = _variant(tmp_path, FRAUD, lambda d: _set(d, field, value))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert fragment in message, message


def test_every_problem_of_an_event_spec_is_reported_at_once(tmp_path):
    def edit(d):
        _set(d, "features.tenure", True)
        _set(d, "features.history.0.group_by", "card")
        _set(d, "label.where", {"reason": ["fraud"]})

    with pytest.raises(SpecError) as err:
        load_spec(_variant(tmp_path, FRAUD, edit))
    message = str(err.value)
    for field in ("features.tenure:", "features.history[0].group_by:", "label.where.reason:"):
        assert field in message, message


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("features.history", [{"group_by": "customer_id", "prefix": "c", "hours": [24]}],
         "features.history: history blocks describe each event of an event entity"),
        ("features.time_of_day", True, "features.time_of_day: the time of day is an event's"),
        ("label", {"kind": "event_outcome", "name": "x", "source": "churn_events", "key": "customer_id",
                   "event_timestamp": "churn_ts", "horizon_days": 30},
         "label.kind: an event_outcome label labels each event of an event entity"),
    ],
)
def test_event_features_and_labels_are_refused_for_a_population(tmp_path, field, value, fragment):
    path = _variant(tmp_path, REPO / "specs" / "churn.yaml", lambda d: _set(d, field, value))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert fragment in str(err.value), str(err.value)


def test_population_specs_keep_their_defaults():
    churn = load_spec(REPO / "specs" / "churn.yaml")
    assert churn.entity.kind == "population" and not churn.is_event and churn.event_timestamp is None
    assert churn.features.tenure and "tenure_days" in churn.feature_columns()
    assert churn.features.history == [] and churn.lookback_days == 90
