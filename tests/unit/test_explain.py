"""SHAP explanations for the model card: one column per feature of the feature table, labelled with its own
values, so plots say `plan = basic`, not `plan = 0`."""

import numpy as np
import pytest

from batchml.explain import dependence_figure, shap_explanation, waterfall_figure
from batchml.models import fit_candidate
from batchml.reports import pyplot
from snapshot_tables import accounts, snapshot_spec, training_set


@pytest.fixture(scope="module")
def table():
    spec = snapshot_spec()
    return spec, training_set(spec, accounts(rows=1200, seed=2))


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in [*ax.get_xticklabels(), *ax.get_yticklabels(), *ax.texts]]


@pytest.mark.parametrize("kind", ["lightgbm", "logistic_regression"])
def test_plots_show_category_names_not_codes(kind, table):
    from batchml.specs import CandidateSpec

    spec, ts = table
    model = fit_candidate(CandidateSpec(name=kind, kind=kind), {"n_estimators": 50} if kind != "logistic_regression"
                          else {}, ts, 0, None)
    rows = ts.frames["test"].head(150).reset_index(drop=True)
    values = shap_explanation(model, rows)
    assert list(values.feature_names) == ts.features  # one-hot columns of the baseline fold back into `plan`
    plan = values.feature_names.index("plan")
    assert set(values.display_data[:, plan]) == set(rows.plan)  # the labels are the feature table's values
    # the explanation still adds up to the model's log-odds (exact for both kinds)
    p = model.raw_proba(rows)
    np.testing.assert_allclose(values.values.sum(axis=1) + values.base_values, np.log(p / (1 - p)), atol=1e-4)

    fig = dependence_figure(values, "plan")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert sorted(labels) == sorted(set(rows.plan)), labels
    pyplot().close(fig)
    row = int(np.argmax(p))
    fig = waterfall_figure(values, row)
    texts = " ".join(_texts(fig))
    assert f"{rows.plan[row]} = plan" in texts, texts  # not "0 = plan"
    pyplot().close(fig)
