"""MLflow registry and the champion/challenger gate, against a real MLflow tracking store (SQLite, in a temp dir)."""

import datetime as dt
import re

import joblib
import numpy as np
import pytest

from batchml import gate, registry
from batchml import warehouse as wh
from batchml.gate import decide
from batchml.specs import UseCaseSpec

pytestmark = pytest.mark.mlflow

T = dt.date(2026, 6, 1)


def _gate(spec: UseCaseSpec, **gate) -> UseCaseSpec:
    data = spec.model_dump()
    data["training"]["gate"].update(gate)
    return UseCaseSpec.model_validate(data)


def _m(roc: float, capture: float = 0.5) -> dict:
    return {"roc_auc": roc, "pr_auc": 0.3, "log_loss": 0.4, "brier": 0.1, "top_decile_capture": capture}


@pytest.mark.parametrize(
    ("candidate", "champion", "verdict", "why"),
    [
        (0.80, None, "champion", "no champion yet"),
        (0.55, None, "rejected", "misses a floor"),
        (0.70, 0.78, "challenger", "does not beat the champion"),  # deliberately worse: never replaces
        (0.782, 0.78, "challenger", "does not beat the champion"),  # a tie within the margin does not either
        (0.786, 0.78, "champion", "beats the champion by the margin"),
        (0.59, 0.50, "rejected", "misses a floor"),  # better than a weak champion is not enough
    ],
)
def test_gate_verdicts(churn_spec, candidate, champion, verdict, why):
    spec = _gate(churn_spec, margin=0.005, floors={"roc_auc": 0.6})
    decision = decide(spec, _m(candidate), _m(champion) if champion else None, 3 if champion else None)
    assert decision.verdict == verdict
    assert any(why in r for r in decision.reasons), decision.reasons


def test_gate_floors_on_lower_is_better_metrics(churn_spec):
    spec = _gate(churn_spec, floors={"brier": 0.05})
    decision = decide(spec, _m(0.9), None, None)
    assert decision.verdict == "rejected" and "brier" in decision.reasons[0]


def test_disabled_gate_promotes_without_comparing(churn_spec):
    decision = decide(_gate(churn_spec, mode="disabled"), _m(0.70), _m(0.90), 4)
    assert decision.verdict == "champion" and "gate disabled" in decision.reasons[-1]


def test_first_model_becomes_champion_and_loads_back_with_the_same_probabilities(tiny_spec, trained_run):
    import mlflow

    from batchml.datasets import TrainingSet

    settings, run = trained_run
    ref = run("first")
    result = gate.register_and_gate(tiny_spec, settings, ref, "manual__first")
    assert result.verdict == "champion" and result.version == 1
    client = registry.connect(settings)
    assert registry.resolve_champion(client, "tiny") == 1

    test = TrainingSet.load(settings.home / "runs" / "first" / "data").frames["test"]
    expected = joblib.load(settings.home / "runs" / "first" / "selected.joblib").predict_proba(test)
    loaded = mlflow.pyfunc.load_model("models:/tiny@champion")
    got = np.asarray(loaded.predict(test.drop(columns=["label"])))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)  # probabilities, not class labels
    assert ((got > 0) & (got < 1)).all() and len(np.unique(got)) > 10

    events = gate.read_events(wh.engine(settings.warehouse_url), "tiny")
    assert [(e["event"], e["model_version"]) for e in events] == [("promoted", 1)]
    version = client.get_model_version("tiny", "1")
    assert version.tags["gate.verdict"] == "champion"
    run_tags = client.get_run(result.mlflow_run_id).data.tags
    assert run_tags["batchml.airflow_run_id"] == "manual__first"
    assert run_tags["batchml.data_hash"] == TrainingSet.load(settings.home / "runs" / "first" / "data").lineage["data_hash"]
    assert run_tags["batchml.spec_sha256"] == tiny_spec.sha256


def test_a_worse_model_never_replaces_the_champion(tiny_spec, trained_run):
    from batchml.datasets import TrainingSet
    from batchml.evaluation import evaluate
    from batchml.models import fit_candidate

    settings, run = trained_run
    gate.register_and_gate(tiny_spec, settings, run("good"), "manual__good")
    ref = run("worse")
    # deliberately worse: a logistic regression trained on shuffled labels
    folder = settings.home / "runs" / "worse"
    ts = TrainingSet.load(folder / "data")
    ts.frames["train"]["label"] = np.random.default_rng(0).permutation(ts.frames["train"]["label"].to_numpy())
    baseline = next(c for c in tiny_spec.training.candidates if c.kind == "logistic_regression")
    joblib.dump(fit_candidate(baseline, {}, ts, 0, 10), folder / "selected.joblib")
    ref = evaluate(tiny_spec, ref)
    result = gate.register_and_gate(tiny_spec, settings, ref, "manual__worse")
    assert result.verdict in ("challenger", "rejected")
    # the card flags a model below the untuned references (here: all of them, on the test split)
    html = open(result.model_card).read()
    assert "The new model is below an untuned reference" in html
    for name in ("xgboost (untuned)", "lightgbm (untuned)"):
        assert re.search(re.escape(name) + r" 0\.[67]\d{3}", html), name
    client = registry.connect(settings)
    assert registry.resolve_champion(client, "tiny") == 1  # unchanged
    events = gate.read_events(wh.engine(settings.warehouse_url), "tiny")
    assert events[-1]["model_version"] == 2 and events[-1]["event"] in ("challenger", "rejected")
    assert events[-1]["metrics"]["champion"]["roc_auc"] > events[-1]["metrics"]["candidate"]["roc_auc"]


def test_model_card_is_self_contained_and_renders(tiny_spec, trained_run):
    import base64
    import json

    from batchml.evaluation import evaluate

    settings, run = trained_run
    data = tiny_spec.model_dump()
    data["card"] = {"intended_use": "Rank users for the retention team's weekly calls.",
                    "out_of_scope": ["Pricing decisions"], "limitations": ["Trained on synthetic users only"],
                    "contact": "#ml-tiny"}
    data["training"].update(fairness={"attributes": ["tier"]}, confidence={"resamples": 200})
    spec = UseCaseSpec.model_validate(data)
    ref = evaluate(spec, run("card"))  # the figures of this spec: fairness by tier
    result = gate.register_and_gate(spec, settings, ref, "manual__card")
    html = open(result.model_card).read()
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) >= 9  # curves, calibration, lift, SHAP bar/beeswarm, 3 dependence, 2 examples
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for text in ("Gate verdict: champion", "baseline (baseline, logistic regression)", "Data window and lineage",
                 "shap.TreeExplainer on",  # the synthetic label has steps and an interaction: trees win
                 "Rank users for the retention team", "Pricing decisions", "Trained on synthetic users only",
                 "ml-platform · #ml-tiny", "95% bootstrap confidence intervals (200 resamples",
                 "Tuned against untuned references", "a time split is never shuffled into folds",
                 "<h2>Fairness</h2>", "<code>tier</code>", "band <code>medium</code>"):
        assert text in html, text
    evaluation = json.loads((settings.home / "runs" / "card" / "evaluation.json").read_text())
    low, high = evaluation["intervals"]["models"]["new"]["roc_auc"]
    assert low < result.test_roc_auc < high and f"[{low:.4f}, {high:.4f}]" in html
    # the tests' own table: the tuned champion is at least the best untuned reference on the test window
    references = evaluation["references"]
    assert references["on"] == "test" and references["below"] == []
    assert result.test_roc_auc >= max(r["test"]["roc_auc"] for r in references["rows"])
    groups = {g["group"]: g for g in evaluation["fairness"]["attributes"]["tier"]["groups"]}
    assert set(groups) == {"free", "paid"} and sum(g["rows"] for g in groups.values()) == evaluation["test_metrics"]["rows"]
    for g in groups.values():
        assert f'<td class="l">{g["group"]}</td><td>{g["rows"]:,}</td>' in html
    client = registry.connect(settings)
    metrics = client.get_run(result.mlflow_run_id).data.metrics
    assert metrics["test_roc_auc_ci_low"] == pytest.approx(low)
    assert "fairness_tier_selection_rate_ratio" in metrics and "untuned_lightgbm_test_roc_auc" in metrics
    _render_in_chromium(result.model_card)


def _render_in_chromium(path: str) -> None:
    """Open the page in headless Chromium and count images that failed to load (0 expected)."""
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("Chromium not installed: the model card was checked by parsing only (run .ci/run to install it)")
        return
    probe = Path(tempfile.mkdtemp()) / "card.html"
    script = ("<script>window.addEventListener('load', () => { const bad = [...document.images]"
              ".filter(i => !i.complete || i.naturalWidth === 0).length; document.title = 'broken=' + bad"
              " + ' total=' + document.images.length; });</script>")
    probe.write_text(Path(path).read_text().replace("</body>", script + "</body>"))
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={probe.parent / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    title = re.search(r"<title>(.*?)</title>", done.stdout)
    assert title and title.group(1).startswith("broken=0 total="), (title.group(1) if title else done.stderr[-2000:])


def test_model_admin_promotes_and_rolls_back_with_events(tiny_spec, trained_run):
    settings, run = trained_run
    gate.register_and_gate(tiny_spec, settings, run("a"), "manual__a")  # v1 champion
    ref = run("b")
    result = gate.register_and_gate(tiny_spec, settings, ref, "manual__b")  # v2: same data, so not by the margin
    assert result.verdict == "challenger"
    client = registry.connect(settings)
    assert registry.alias_version(client, "tiny", registry.CHALLENGER) == 2

    out = gate.admin_action(tiny_spec, settings, "promote", 2, "business asked for v2", "alice", "manual__admin1")
    assert (out.champion, out.previous_champion) == (2, 1)
    assert registry.alias_version(client, "tiny", registry.CHALLENGER) is None  # the challenger is now champion
    out = gate.admin_action(tiny_spec, settings, "rollback", None, "v2 misbehaves", "bob", "manual__admin2")
    assert (out.champion, out.previous_champion) == (1, 2)
    events = gate.read_events(wh.engine(settings.warehouse_url), "tiny")
    assert [e["event"] for e in events] == ["promoted", "challenger", "promoted_manually", "rolled_back"]
    assert events[-1]["actor"] == "bob" and "v2 misbehaves" in events[-1]["reasons"][0]

    with pytest.raises(registry.RegistryError, match="no version 9"):
        gate.admin_action(tiny_spec, settings, "promote", 9, "typo", "carol", "manual__admin3")
    with pytest.raises(registry.RegistryError, match="say why"):
        gate.admin_action(tiny_spec, settings, "rollback", None, "", "carol", "manual__admin4")
