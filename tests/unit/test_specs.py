"""Spec loading: every shipped spec is valid; every bad spec names the file, the dotted field and the reason."""

import shutil
from pathlib import Path

import pytest

from batchml.errors import SpecError
from batchml.specs import discover_specs, get_spec, load_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "specs"
REPO_SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_every_shipped_spec_is_valid():
    specs = discover_specs(REPO_SPECS)
    assert [s.name for s in specs] == sorted(p.stem for p in REPO_SPECS.glob("*.yaml"))
    for spec in specs:
        assert spec.path == (REPO_SPECS / f"{spec.name}.yaml").resolve()
        assert len(spec.sha256) == 64


def test_churn_spec_declares_what_the_pipeline_needs(churn_spec):
    assert churn_spec.entity.key == "customer_id"
    assert churn_spec.label.horizon_days == 30
    assert churn_spec.lookback_days == 90
    assert churn_spec.dag_id("features") == "churn__features"
    assert churn_spec.score_table == "churn_scores"


def test_spec_hash_changes_with_content(tmp_path):
    a = load_spec(FIXTURES / "tiny.yaml")
    (tmp_path / "tiny.yaml").write_text((FIXTURES / "tiny.yaml").read_text() + "\n# a comment\n")
    b = load_spec(tmp_path / "tiny.yaml")
    assert a.sha256 != b.sha256


@pytest.mark.parametrize(
    ("fixture", "fragments"),
    [
        ("bad_typo", ["label.horizon_dayz: unknown key; valid keys: kind, name, source, horizon_days",
                      "label.horizon_days: required field is missing"]),
        ("bad_column_ref", ["features.aggregates[0].sum[0]: 'valeu' is not a column of source 'events'"]),
        ("bad_kind", ["sources.cancellations.kind: Input should be 'entity', 'events' or 'snapshot' (got 'event')"]),
        ("bad_window", ["features.aggregates[0].windows", "between 1 and 3650"]),
        ("bad_trend", ["features.aggregates[0].trend: short (3) and long (5) must be windows"]),
        ("bad_source_ref", ["label.source: unknown source 'refunds'; declared sources: cancellations, events, users"]),
        ("bad_numeric_sum", ["features.aggregates[0].sum[0]: column 'kind' of 'events' has type 'string'"]),
        ("bad_expectation", ["expectations.features[0].expectation", "should match pattern"]),
        ("bad_name", ["name: 'other' must equal the file name 'bad_name'"]),
        ("bad_yaml", ["bad_yaml.yaml:8:4: invalid YAML", "invalid YAML"]),
    ],
)
def test_bad_spec_names_file_field_and_reason(fixture, fragments):
    path = FIXTURES / f"{fixture}.yaml"
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_a_bad_spec_fails_discovery_instead_of_vanishing(tmp_path):
    shutil.copy(FIXTURES / "tiny.yaml", tmp_path / "tiny.yaml")
    shutil.copy(FIXTURES / "bad_window.yaml", tmp_path / "bad_window.yaml")
    with pytest.raises(SpecError, match="bad_window.yaml"):
        discover_specs(tmp_path)


def test_missing_folder_and_unknown_use_case_say_what_to_do(tmp_path):
    with pytest.raises(SpecError, match="BATCHML_SPECS_DIR"):
        discover_specs(tmp_path / "nowhere")
    with pytest.raises(SpecError, match="known use cases: .*churn"):
        get_spec(REPO_SPECS, "nope")
    with pytest.raises(SpecError, match="not a valid name"):
        get_spec(REPO_SPECS, "../etc/passwd")


def test_non_mapping_yaml_is_rejected(tmp_path):
    (tmp_path / "x.yaml").write_text("- just\n- a list\n")
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        load_spec(tmp_path / "x.yaml")


# Snapshot use cases (telco_churn) --------------------------------------------------------------------------------


def test_telco_spec_is_a_snapshot_with_a_column_label():
    spec = load_spec(REPO_SPECS / "telco_churn.yaml")
    assert spec.is_snapshot and spec.horizon_days == 0
    assert spec.label.kind == "column" and spec.label.positive == "Yes"
    assert spec.training.split.kind == "random" and spec.training.cv_folds == 5
    assert spec.lookback_days == 0


def _telco_variant(tmp_path, edit) -> Path:
    import yaml

    data = yaml.safe_load((REPO_SPECS / "telco_churn.yaml").read_text())
    edit(data)
    path = tmp_path / "telco_churn.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _set(data, dotted: str, value):
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    if value is None:
        del data[last]
    else:
        data[last] = value


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("label.column", "churned_flag",
         "label.column: 'churned_flag' is not a column of source 'telco_customers'"),
        ("sources.telco_customers.columns.churn.allowed", ["No", "Yes", "Maybe"],
         "label.column: a binary label needs exactly two allowed values"),
        ("label.positive", "yes", "label.positive: 'yes' is not in the column's allowed ['No', 'Yes']"),
        ("features.numeric", ["tenure", "monthly_charges", "contract"],
         "features.numeric[2]: column 'contract' of 'telco_customers' has type 'string'"),
        ("features.static", ["contract", "churn"], "label.column: 'churn' is also a feature or the key"),
        ("features.tenure", True, "features.tenure: source 'telco_customers' has no timestamp"),
        ("training.split", {"every_days": 7}, "training.split: a column label has no time axis"),
        ("features.fill", {"total_charges": "zero"}, "features.fill.total_charges: 'total_charges' is numeric"),
        ("label.kind", "colum", "label: kind must be one of 'event_within_horizon', 'column'"),
        ("label.horizon_days", 30, "label.horizon_days: unknown key; valid keys: kind, name, column, positive"),
    ],
)
def test_bad_snapshot_spec_names_file_field_and_reason(tmp_path, field, value, fragment):
    path = _telco_variant(tmp_path, lambda d: _set(d, field, value))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value).startswith(str(path))
    assert fragment in str(err.value), str(err.value)


def test_an_event_source_needs_a_timestamp(tmp_path):
    path = _telco_variant(tmp_path, lambda d: _set(d, "sources.telco_customers.kind", "events"))
    with pytest.raises(SpecError, match="sources.telco_customers.timestamp: a source of kind 'events' needs a timestamp"):
        load_spec(path)


def test_two_specs_declaring_one_source_differently_fail_discovery(tmp_path):
    import yaml

    for name in ("churn", "telco_churn"):
        shutil.copy(REPO_SPECS / f"{name}.yaml", tmp_path)
    data = yaml.safe_load((tmp_path / "telco_churn.yaml").read_text())
    data["sources"]["customers"] = data["sources"].pop("telco_customers")
    data["entity"]["source"] = "customers"
    (tmp_path / "telco_churn.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SpecError, match="sources.customers: declared differently in .*churn.yaml; source names are shared"):
        discover_specs(tmp_path)
