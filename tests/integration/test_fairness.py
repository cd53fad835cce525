"""Fairness, end to end on a table of the test's own with a planted disparity (the 18-34 age band churns more, so it
is flagged more; `region` has no effect): the figures per group, the gate's fairness floor against a real MLflow
store and warehouse, and the spec checks. Also the tuned champion against the untuned references on this table."""

import json
from pathlib import Path

import numpy as np
import pytest

from batchml import gate, registry
from batchml import warehouse as wh
from batchml.errors import SpecError
from snapshot_tables import accounts, saved_run, snapshot_spec

pytestmark = pytest.mark.mlflow

AGE_FLOOR = {"attribute": "age_band", "metric": "selection_rate_ratio", "min": 0.8}


def _spec(floors=None):
    return snapshot_spec({"fairness": {"attributes": ["age_band", "region"]},
                          "gate": {"floors": {"roc_auc": 0.6}, "fairness": floors or []}})


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from batchml.evaluation import evaluate
    from batchml.training import train_candidates

    spec = _spec()
    folder = tmp_path_factory.mktemp("fairness") / "run"
    ref = saved_run(spec, accounts(rows=4000, seed=5, young_effect=1.5), folder)
    return evaluate(spec, train_candidates(spec, ref, trials=3))


def _evaluation(evaluated) -> dict:
    return json.loads((Path(evaluated.run_dir) / "evaluation.json").read_text())


def test_group_figures_are_counted_from_the_scores(evaluated):
    import joblib

    from batchml.datasets import TrainingSet

    folder = Path(evaluated.run_dir)
    test = TrainingSet.load(folder / "data").frames["test"]
    p = joblib.load(folder / "selected.joblib").predict_proba(test)
    fairness = _evaluation(evaluated)["fairness"]
    assert (fairness["band"], fairness["threshold"]) == ("medium", 0.35)  # the lowest band flags
    groups = {g["group"]: g for g in fairness["attributes"]["age_band"]["groups"]}
    for band, g in groups.items():
        mask = (test.age_band == band).to_numpy()
        flagged, y = p[mask] >= 0.35, test.label.to_numpy()[mask]
        assert g["rows"] == mask.sum() and g["selection_rate"] == pytest.approx(flagged.mean())
        assert g["tpr"] == pytest.approx(flagged[y == 1].mean()) and g["fpr"] == pytest.approx(flagged[y == 0].mean())
    ratio = fairness["attributes"]["age_band"]["ratios"]["new"]["selection_rate_ratio"]
    rates = [g["selection_rate"] for g in groups.values()]
    assert ratio["value"] == pytest.approx(min(rates) / max(rates)) and ratio["high"]["group"] == "18-34"
    assert ratio["value"] < 0.8  # the planted disparity shows
    assert fairness["attributes"]["region"]["ratios"]["new"]["selection_rate_ratio"]["value"] > 0.8  # no effect


def test_a_planted_disparity_fails_the_fairness_floor_with_the_reason(evaluated, isolated_home):
    settings = isolated_home()
    spec = _spec([AGE_FLOOR])
    result = gate.register_and_gate(spec, settings, evaluated, "manual__fair")
    assert result.verdict == "rejected"
    reason = next(r for r in result.reasons if "fairness" in r)
    ratio = _evaluation(evaluated)["fairness"]["attributes"]["age_band"]["ratios"]["new"]["selection_rate_ratio"]
    assert reason.startswith(f"misses a fairness floor: selection_rate_ratio[age_band] = {ratio['value']:.3f} < 0.8")
    assert f"age_band={ratio['low']['group']}" in reason and "age_band=18-34" in reason
    assert "score >= 0.35 (band medium)" in reason
    client = registry.connect(settings)
    assert registry.alias_version(client, "accounts", registry.CHAMPION) is None  # registered, no alias
    assert "misses a fairness floor" in client.get_model_version("accounts", "1").tags["gate.reasons"]
    event = gate.read_events(wh.engine(settings.warehouse_url), "accounts")[-1]
    assert event["event"] == "rejected" and event["reasons"] == result.reasons
    assert event["metrics"]["fairness"]["selection_rate_ratio[age_band]"] == pytest.approx(ratio["value"])
    html = open(result.model_card).read()
    assert "Gate verdict: rejected" in html and "misses a fairness floor" in html
    assert "<code>age_band</code>" in html and "<code>region</code>" in html and "18-34 / " not in html
    assert f"{ratio['low']['group']} / 18-34" in html  # the ratio names its lowest and highest group


def test_a_floor_the_model_clears_is_recorded_as_cleared(evaluated):
    spec = _spec([{"attribute": "region", "metric": "selection_rate_ratio", "min": 0.7}])
    evaluation = _evaluation(evaluated)
    decision = gate.decide(spec, evaluation["test_metrics"], None, None, evaluation["fairness"])
    assert decision.verdict == "champion", decision.reasons
    assert any(r.startswith("clears the fairness floor: selection_rate_ratio[region]") for r in decision.reasons)
    # the same model under the age-band floor, and a floor that cannot be checked
    assert gate.decide(_spec([AGE_FLOOR]), evaluation["test_metrics"], None, None,
                       evaluation["fairness"]).verdict == "rejected"
    strict = snapshot_spec({"fairness": {"attributes": ["region"], "min_group_rows": 100_000},
                            "gate": {"fairness": {"attribute": "region", "metric": "tpr_ratio", "min": 0.5}}})
    from batchml.datasets import TrainingSet
    from batchml.evaluation import fairness_report

    test = TrainingSet.load(Path(evaluated.run_dir) / "data").frames["test"]
    report = fairness_report(strict, test, test.label.to_numpy(), {"new": np.full(len(test), 0.5)})
    decision = gate.decide(strict, evaluation["test_metrics"], None, None, report)
    assert decision.verdict == "rejected" and "cannot be checked" in decision.reasons[0]


def test_the_tuned_champion_is_at_least_every_untuned_reference_on_the_same_folds(evaluated):
    evaluation = _evaluation(evaluated)
    references = evaluation["references"]
    assert references["on"] == "cv" and references["selection_on_folds"]
    champion = evaluation["cross_validation"][evaluation["selected"]]["roc_auc"]
    best = max(r["cv"]["roc_auc"] for r in references["rows"])
    others = ", ".join(f"{r['name']} {r['cv']['roc_auc']:.4f}" for r in references["rows"])
    print(f"\nsynthetic accounts, 3-fold CV ROC AUC: champion {champion:.4f}, best untuned reference {best:.4f} "
          f"({others}); test ROC AUC {evaluation['test_metrics']['roc_auc']:.4f}")
    assert champion >= best and references["below"] == []
    assert all(len(r["cv"]["per_fold"]) == 3 for r in references["rows"])


@pytest.mark.parametrize(("training", "message"), [
    ({"fairness": {"attributes": ["age_band"]}, "gate": {"fairness": {"attribute": "region", "min": 0.8}}},
     "training.gate.fairness[0].attribute: 'region' is not a sensitive attribute"),
    ({"fairness": {"attributes": ["account_id"]}}, "training.fairness.attributes[0]: 'account_id' is not a static"),
    ({"fairness": {"attributes": ["region"], "flag_band": "urgent"}},
     "training.fairness.flag_band: 'urgent' is not a band of scoring.bands"),
    ({"gate": {"fairness": [{"attribute": "region", "metric": "parity", "min": 0.8}]}}, "metric"),
])
def test_fairness_spec_mistakes_name_the_field(training, message, tmp_path):
    import yaml

    from batchml.specs import parse_spec

    data = _spec().model_dump(exclude_defaults=True)
    data["training"].update(training)
    path = tmp_path / "accounts.yaml"
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_spec(yaml.safe_dump(data), path)
