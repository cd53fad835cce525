"""Reason codes in plain words: what raises a score, what lowers it most, values with their type, filled values
shown as missing; descriptions from the spec or generated from the feature definitions."""

import numpy as np
import pandas as pd
import pytest

from batchml.reason_codes import FeatureWords, feature_words, reason_columns
from batchml.specs import UseCaseSpec

FEATURES = ["plan", "income", "tickets"]
ABOUT = {"plan": FeatureWords("plan of the customer", categorical=True),
         "income": FeatureWords("yearly income", indicator="income_was_missing", fill=0.0),
         "tickets": FeatureWords("support tickets in 30 days")}


def _frame():
    return pd.DataFrame({"plan": ["basic", "premium", "basic", "standard"], "income": [0.0, 52000.5, 0.0, 12.25],
                         "income_was_missing": [1, 0, 0, 0], "tickets": [3.0, 0.0, 1.0, 2.0]})


def test_reasons_are_the_features_that_raise_the_score_strongest_first():
    contrib = np.array([[0.5, -0.2, 0.9],      # two raise it, one lowers it
                        [-0.1, -0.4, -0.3],    # nothing raises it
                        [0.0, 0.2, -0.1],      # one raises it, a zero is no reason
                        [np.nan] * 3])         # no codes for this row
    out = reason_columns(FEATURES, contrib, _frame(), 2, ABOUT)
    assert out["reason_1"].tolist() == ["tickets", None, "income", None]
    assert out["reason_2"].tolist() == ["plan", None, None, None]
    impacts = [v for i in (1, 2) for v in out[f"reason_{i}_impact"] if v is not None]
    assert impacts and all(v > 0 for v in impacts)
    assert out["reason_1_impact"].tolist() == [0.9, None, 0.2, None]
    # the strongest one lowering it, in its own columns
    assert out["protective_reason"].tolist() == ["income", "income", "tickets", None]
    assert out["protective_reason_impact"].tolist() == [-0.2, -0.4, -0.1, None]


def test_values_keep_their_type_and_filled_values_show_as_missing():
    contrib = np.array([[0.5, 0.7, -0.1], [0.5, 0.7, -0.1], [0.5, 0.7, -0.1], [0.5, 0.7, -0.1]])
    out = reason_columns(FEATURES, contrib, _frame(), 2, ABOUT)
    assert out["reason_1"].tolist() == ["income"] * 4
    # row 0: income was missing and filled with 0 -> no value, "missing" in words; row 2: a real 0
    assert out["reason_1_value"].tolist() == [None, "52000.5", "0", "12.25"]
    assert out["reason_1_number"].tolist() == [None, 52000.5, 0.0, 12.25]
    assert out["reason_1_description"][0] == "yearly income: missing (scored as 0, the spec's fill)"
    assert out["reason_1_description"][2] == "yearly income"
    # a category: text, no number
    assert out["reason_2"].tolist() == ["plan"] * 4
    assert out["reason_2_value"].tolist() == ["basic", "premium", "basic", "standard"]
    assert out["reason_2_number"].tolist() == [None] * 4
    assert out["protective_reason_number"].tolist() == [3.0, 0.0, 1.0, 2.0]


def _spec(churn_spec: UseCaseSpec, **features) -> UseCaseSpec:
    data = churn_spec.model_dump()
    data["features"].update(features)
    return UseCaseSpec.model_validate(data)


def test_every_feature_has_words_generated_from_its_definition_or_given_in_the_spec(churn_spec):
    about = feature_words(churn_spec)
    assert set(about) == set(churn_spec.feature_columns())
    assert about["txn_count_7d"].description == "number of transactions in the last 7 days"
    assert about["tickets_share_reason_cancellation_90d"].description == \
        "share of support tickets with reason cancellation in the last 90 days"
    assert about["txn_mean_amount_30d"].description == "average amount per transaction in the last 30 days"
    assert about["tickets_days_since_last"].description.startswith("days since the last support ticket")
    assert about["tenure_days"].description == "days since the customer started (signup ts)"
    assert about["plan"].categorical and not about["txn_count_7d"].categorical
    given = feature_words(_spec(churn_spec, descriptions={"txn_count_7d": "card payments this week"}))
    assert given["txn_count_7d"].description == "card payments this week"


def test_descriptions_and_indicators_are_checked_against_the_features(churn_spec, tmp_path):
    import yaml

    from batchml.errors import SpecError
    from batchml.specs import parse_spec

    for features, message in (({"descriptions": {"txn_count_8d": "typo"}},
                               r"features.descriptions.txn_count_8d: 'txn_count_8d' is not a feature of this spec"),
                              ({"missing_indicators": ["plan"]},
                               r"features.missing_indicators\[0\]: 'plan' is not filled")):
        data = churn_spec.model_dump()
        data["features"].update(features)
        with pytest.raises(SpecError, match=message):
            parse_spec(yaml.safe_dump(data), tmp_path / "churn.yaml")


def test_filled_columns_get_a_was_missing_indicator_unless_the_spec_opts_out(churn_spec):
    filled = _spec(churn_spec, fill={"plan": "basic"})
    assert filled.features.indicator_columns() == {"plan_was_missing": "share"}
    about = feature_words(filled)
    assert about["plan"].indicator == "plan_was_missing" and about["plan"].fill == "basic"
    assert about["plan_was_missing"].description == "plan was missing (1 = yes, 0 = no)"
    opted_out = _spec(churn_spec, fill={"plan": "basic"}, missing_indicators=[])
    assert opted_out.features.indicator_columns() == {} and feature_words(opted_out)["plan"].indicator is None
