"""Batch scoring into the warehouse: idempotent, atomic, pinned, with reason codes that are real SHAP values.

Runs on SQLite and on the PostgreSQL server the suite starts itself."""

import datetime as dt
import re
import shutil

import joblib
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from batchml import gate, registry, score_table, scoring, validation
from batchml import warehouse as wh

pytestmark = pytest.mark.mlflow
D = dt.date(2026, 5, 25)  # a snapshot of the tiny lake: its feature partition exists
VOLATILE = ["scored_at", "airflow_run_id"]


def score(spec, settings, label: str, pinned=None, as_of: dt.date = D):
    pinned = pinned or scoring.pin_models(spec, settings)
    ref = scoring.score_features(spec, settings, as_of, pinned, f"manual__{label}", label)
    ref = score_table.load_staging(spec, settings, ref, label)
    ref = validation.validate_scores(spec, settings, ref, label)
    return score_table.publish_scores(spec, settings, ref)


def evaluated(folder):
    """The evaluated run that scoring_env registered (copied into `folder`), as the register step takes it."""
    from batchml.results import EvaluatedModel

    return EvaluatedModel(run_dir=str(folder), selected="x", valid_score=0.9, test_roc_auc=0.5,
                          baseline_test_roc_auc=0.5)


def rows(settings, table="tiny_scores", where="") -> pd.DataFrame:
    engine = wh.create_engine(settings.warehouse_url)
    frame = pd.read_sql(f"SELECT * FROM {table} {where}", engine)
    engine.dispose()
    return frame.sort_values(["model_role", "user_id"]).reset_index(drop=True)


def test_scoring_a_date_twice_gives_identical_rows(tiny_spec, scoring_env):
    first = score(tiny_spec, scoring_env, "a")
    before = rows(scoring_env)
    second = score(tiny_spec, scoring_env, "b")
    after = rows(scoring_env)
    assert first.rows == second.rows == len(after) == 400  # one row per entity, no duplicates
    pd.testing.assert_frame_equal(before.drop(columns=VOLATILE), after.drop(columns=VOLATILE))
    assert set(after.airflow_run_id) == {"manual__b"}
    assert after.score.between(0, 1).all() and after.user_id.is_unique
    # deciles: ten groups of about the same size, decile 1 the highest scores
    sizes = after.risk_decile.value_counts().sort_index()
    assert list(sizes.index) == list(range(1, 11)) and sizes.max() - sizes.min() <= 4
    means = after.groupby("risk_decile").score.mean()
    assert means.is_monotonic_decreasing
    # the top exact_share has exact reason codes, with the feature's value
    exact = after.reasons_exact.astype(bool)  # SQLite keeps booleans as 0/1
    top = after[exact]
    assert len(top) == pytest.approx(0.1 * 400, abs=2) and top.score.min() >= after[~exact].score.max()
    assert top.reason_1.notna().any() and (top.reason_1.isna() | top.reason_1_value.notna()).all()
    # the analysts' views
    assert len(rows(scoring_env, "tiny_scores_latest")) == 400
    assert set(rows(scoring_env, "tiny_scores_champion").model_role) == {"champion"}
    # the staging table and files are gone
    names = sa.inspect(wh.create_engine(scoring_env.warehouse_url)).get_table_names()
    assert not [n for n in names if "_s2026" in n]
    assert not (scoring_env.staging_root / "scores" / "tiny" / "dt=2026-05-25").exists()


def test_a_failure_half_way_through_loading_leaves_the_previous_rows(tiny_spec, scoring_env, monkeypatch):
    score(tiny_spec, scoring_env, "good")
    before = rows(scoring_env)
    real_bulk_load = wh.bulk_load

    def failing_bulk_load(engine, table, batches, schema):
        def some_rows_then_crash():
            for batch in batches:
                yield batch.slice(0, 50)  # part of the rows reach the warehouse...
                raise RuntimeError("disk full (injected)")  # ...then the load dies
        return real_bulk_load(engine, table, some_rows_then_crash(), schema)

    monkeypatch.setattr(wh, "bulk_load", failing_bulk_load)
    pinned = scoring.pin_models(tiny_spec, scoring_env)
    ref = scoring.score_features(tiny_spec, scoring_env, D, pinned, "manual__crash", "crash")
    with pytest.raises(Exception, match="injected"):
        score_table.load_staging(tiny_spec, scoring_env, ref, "crash")
    after = rows(scoring_env)
    pd.testing.assert_frame_equal(before, after)
    names = sa.inspect(wh.create_engine(scoring_env.warehouse_url)).get_table_names()
    assert not [n for n in names if "_s2026" in n], "the partial staging table must be dropped"


def test_a_staging_table_a_killed_run_left_is_dropped_by_the_next_run(tiny_spec, scoring_env):
    """A kill -9 during publishing cannot clean up: the next run for that date drops what it left."""
    score(tiny_spec, scoring_env, "good")
    before = rows(scoring_env)
    pinned = scoring.pin_models(tiny_spec, scoring_env)
    staged = scoring.score_features(tiny_spec, scoring_env, D, pinned, "manual__killed", "killed")
    loaded = score_table.load_staging(tiny_spec, scoring_env, staged, "killed")  # ... and the process dies here
    engine = wh.engine(scoring_env.warehouse_url)
    assert loaded.staging_table in wh.table_names(engine)
    pd.testing.assert_frame_equal(before, rows(scoring_env))  # readers still see the published rows
    score(tiny_spec, scoring_env, "next")
    assert not [n for n in wh.table_names(engine) if "_s2026" in n]
    assert len(rows(scoring_env)) == 400


def test_invalid_scores_are_not_published(tiny_spec, scoring_env):
    import pyarrow as pa
    import pyarrow.parquet as pq

    score(tiny_spec, scoring_env, "good")
    before = rows(scoring_env)
    pinned = scoring.pin_models(tiny_spec, scoring_env)
    ref = scoring.score_features(tiny_spec, scoring_env, D, pinned, "manual__bad", "bad")
    table = pq.read_table(ref.staged_file)
    bad = table.column("score").to_numpy().copy()
    bad[:3] = 1.7
    pq.write_table(table.set_column(table.schema.get_field_index("score"), "score", pa.array(bad)), ref.staged_file)
    ref = score_table.load_staging(tiny_spec, scoring_env, ref, "bad")
    with pytest.raises(Exception, match=r"expect_column_values_to_be_between on score.*3 unexpected"):
        validation.validate_scores(tiny_spec, scoring_env, ref, "bad")
    pd.testing.assert_frame_equal(before, rows(scoring_env))
    names = sa.inspect(wh.create_engine(scoring_env.warehouse_url)).get_table_names()
    assert ref.staging_table not in names


def test_duplicated_scores_are_not_published(tiny_spec, scoring_env):
    """A key scored twice fails the score checks by name, with the key, on SQLite (a GX query) and on PostgreSQL
    (the staging table's primary key, built before the GX run)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    score(tiny_spec, scoring_env, "good")
    before = rows(scoring_env)
    pinned = scoring.pin_models(tiny_spec, scoring_env)
    ref = scoring.score_features(tiny_spec, scoring_env, D, pinned, "manual__twice", "twice")
    table = pq.read_table(ref.staged_file)
    pq.write_table(pa.concat_tables([table, table.slice(5, 2)]), ref.staged_file)
    twice = table.column("user_id")[5].as_py()
    ref = score_table.load_staging(tiny_spec, scoring_env, ref, "twice")
    with pytest.raises(Exception, match=r"expect_compound_columns_to_be_unique") as err:
        validation.validate_scores(tiny_spec, scoring_env, ref, "twice")
    assert "4 unexpected" in str(err.value) and twice in str(err.value)
    pd.testing.assert_frame_equal(before, rows(scoring_env))
    names = sa.inspect(wh.create_engine(scoring_env.warehouse_url)).get_table_names()
    assert ref.staging_table not in names


def test_versions_are_pinned_for_the_whole_run(tiny_spec, scoring_env):
    pinned = scoring.pin_models(tiny_spec, scoring_env)
    assert pinned.to_xcom() == {"model_name": "tiny", "champion": 1, "challenger": None}
    # a second version is registered and promoted while the run is in progress
    folder = scoring_env.home / "run"
    gate.register_and_gate(tiny_spec, scoring_env, evaluated(folder), "t2")
    gate.admin_action(tiny_spec, scoring_env, "promote", 2, "promoted mid-run", "test", "admin")
    score(tiny_spec, scoring_env, "pinned", pinned=pinned)
    assert set(rows(scoring_env).model_version) == {1}
    score(tiny_spec, scoring_env, "next")  # the next run pins the new champion
    assert set(rows(scoring_env).model_version) == {2}


def test_challenger_is_shadow_scored_but_not_in_the_analysts_views(tiny_spec, scoring_env):
    folder = scoring_env.home / "run"
    result = gate.register_and_gate(tiny_spec, scoring_env, evaluated(folder), "t2")
    assert result.verdict == "challenger"  # same model: not better by the margin
    out = score(tiny_spec, scoring_env, "shadow")
    assert (out.champion, out.challenger, out.rows) == (1, 2, 800)
    all_rows = rows(scoring_env)
    assert all_rows.groupby("model_role").model_version.unique().to_dict() == {"challenger": [2], "champion": [1]}
    assert len(rows(scoring_env, "tiny_scores_champion")) == 400
    assert set(rows(scoring_env, "tiny_scores_latest").model_version) == {1}
    # shadow scores carry no reason codes (README: they are compared in aggregate, never acted on row by row)
    shadow = all_rows[all_rows.model_role == "challenger"]
    reason_columns = [c for c in all_rows.columns if c.startswith(("reason_", "protective_reason"))]
    assert shadow[reason_columns].isna().all().all() and not shadow.reasons_exact.astype(bool).any()


def test_reasons_in_the_table_raise_the_score_and_read_in_words(tiny_spec, scoring_env):
    """Every reason raises the score (positive impact), the protective reason lowers it, each comes with words from
    the spec's definitions and its value as text and, for numbers, as a number."""
    from batchml.reason_codes import feature_words

    score(tiny_spec, scoring_env, "words")
    table = rows(scoring_env, "tiny_scores_champion")
    words = {name: about.description for name, about in feature_words(tiny_spec).items()}
    categorical = [c for c, k in tiny_spec.feature_columns().items() if k == "categorical"]
    features = pd.read_parquet(scoring_env.features_root / "tiny" / f"dt={D}" / "part-0.parquet").set_index("user_id")
    seen = 0
    for slot in ("reason_1", "reason_2", "reason_3", "protective_reason"):
        named = table[table[slot].notna()]
        seen += len(named)
        impact = named[f"{slot}_impact"]
        assert ((impact > 0) if slot != "protective_reason" else (impact < 0)).all()
        assert (named[f"{slot}_description"] == named[slot].map(words)).all()
        numeric = named[~named[slot].isin(categorical)]
        observed = [features.at[u, f] for u, f in zip(numeric.user_id, numeric[slot], strict=True)]
        np.testing.assert_allclose(numeric[f"{slot}_number"].astype(float), observed, rtol=1e-9)
        assert named[named[slot].isin(categorical)][f"{slot}_number"].isna().all()
        assert table[table[slot].isna()][[f"{slot}_value", f"{slot}_number", f"{slot}_impact"]].isna().all().all()
    assert seen > 400  # most rows have several reasons
    # fewer raising features than slots leaves the later slots empty, never filled with features that lower it
    assert (table.reason_2.isna() | table.reason_1.notna()).all() and (table.reason_3.isna() | table.reason_2.notna()).all()


def test_a_filled_value_is_shown_as_missing(tiny_spec, tiny_lake, trained_folder, tmp_path):
    """A value the feature job filled (its `<column>_was_missing` indicator is 1) reaches the score table as
    missing, in words, and with no value; an observed value equal to the fill value is shown as it is."""
    from batchml.scoring import PinnedModel, score_partition

    features_root, _ = tiny_lake
    frame = pd.read_parquet(features_root / "tiny" / f"dt={D}" / "part-0.parquet")
    model = joblib.load(f"{trained_folder.run_dir}/selected.joblib")
    data = tiny_spec.model_dump()
    data["features"]["fill"] = {"tier": "free"}
    data["scoring"]["reason_codes"].update(top=10, others="exact")
    spec = type(tiny_spec).model_validate(data)
    assert "tier_was_missing" in spec.features.indicator_columns()
    frame["tier_was_missing"] = (np.arange(len(frame)) % 2).astype("int64")  # every other row had no tier
    frame.loc[frame.tier_was_missing == 1, "tier"] = "free"  # what the feature job filled in
    path = tmp_path / "features.parquet"
    frame.to_parquet(path)
    run = score_partition(spec, path, [PinnedModel("champion", "tiny", 1, model)], tmp_path / "s.parquet", D, "r")
    out = pd.read_parquet(run.staged_file).merge(frame[["user_id", "tier", "tier_was_missing"]], on="user_id")
    slots = [f"reason_{i}" for i in range(1, 11)] + ["protective_reason"]
    tier = pd.concat([out[out[s] == "tier"][[f"{s}_value", f"{s}_description", "tier", "tier_was_missing"]]
                      .set_axis(["value", "description", "tier", "missing"], axis=1) for s in slots])
    missing, observed = tier[tier.missing == 1], tier[tier.missing == 0]
    assert len(missing) > 10 and len(observed) > 10, "tier is a reason on enough rows of both kinds"
    assert missing.value.isna().all()
    assert (missing.description == "tier: missing (scored as free, the spec's fill)").all()
    assert (observed.value == observed.tier).all() and (observed.description == "tier").all()


@pytest.mark.parametrize("damage", ["no_champion", "missing_partition", "empty_partition", "wrong_columns",
                                    "unreachable_warehouse"])
def test_bad_input_fails_clearly_and_writes_nothing(damage, tiny_spec, scoring_env, monkeypatch, tmp_path):
    from batchml.errors import BatchMLError
    from batchml.storage import feature_partition_file

    as_of, fragment = D, None
    if damage == "no_champion":
        client = registry.connect(scoring_env)
        client.delete_registered_model_alias("tiny", "champion")
        fragment = "has no champion yet: run the training DAG"
    elif damage == "missing_partition":
        as_of, fragment = dt.date(2026, 5, 26), "no feature partition for 2026-05-26: run tiny__features first"
    else:
        # work on a private copy of the lake's partition
        private = tmp_path / "features"
        shutil.copytree(scoring_env.features_root, private)
        monkeypatch.setenv("BATCHML_DATA_ROOT", str(tmp_path))
        from batchml.settings import get_settings

        settings = get_settings()
        part = feature_partition_file(settings.features_root, "tiny", D)
        frame = pd.read_parquet(part)
        if damage == "empty_partition":
            frame.head(0).to_parquet(part)
            fragment = "the feature partition for 2026-05-25 is empty"
        elif damage == "wrong_columns":
            frame.drop(columns=["ev_count_2d"]).to_parquet(part)
            fragment = "columns ['ev_count_2d'] of the model's signature are missing"
        else:
            monkeypatch.setenv("BATCHML_WAREHOUSE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/nowhere")
            settings = get_settings()
            fragment = "cannot reach the warehouse"
        scoring_env = settings
    with pytest.raises(BatchMLError, match=re.escape(fragment)):
        score(tiny_spec, scoring_env, "bad", as_of=as_of)
    if damage != "unreachable_warehouse":
        engine = wh.create_engine(scoring_env.warehouse_url)
        assert "tiny_scores" not in sa.inspect(engine).get_table_names() or rows(scoring_env).empty


def test_table_names_from_specs_cannot_inject_sql(tiny_spec):
    from batchml.errors import SpecError
    from batchml.specs import UseCaseSpec

    data = tiny_spec.model_dump()
    data["scoring"]["table"] = "scores; DROP TABLE users"
    with pytest.raises(Exception, match="should match pattern"):
        UseCaseSpec.model_validate(data)
    with pytest.raises(wh.WarehouseError, match="not a valid identifier"):
        wh.check_identifier('scores"; DROP TABLE users; --')
    assert SpecError


@pytest.mark.s3
def test_scores_are_exported_to_s3(tiny_spec, scoring_env, s3_env):
    import pyarrow.parquet as pq
    from pyarrow import BufferReader

    from batchml.storage import s3_client

    data = tiny_spec.model_dump()
    data["scoring"]["export_url"] = f"s3://{s3_env}/exports"
    spec = type(tiny_spec).model_validate(data)
    out = score(spec, scoring_env, "export")
    assert out.exported == f"s3://{s3_env}/exports/tiny_scores/dt=2026-05-25/scores.parquet"
    body = s3_client().get_object(Bucket=s3_env, Key="exports/tiny_scores/dt=2026-05-25/scores.parquet")["Body"].read()
    assert pq.read_table(BufferReader(body)).num_rows == 400


@pytest.mark.parametrize("kind", ["xgboost", "lightgbm", "logistic_regression"])
def test_reason_codes_agree_with_shap(kind, tiny_spec, tiny_training_set):
    import shap

    from batchml.reason_codes import feature_words, reason_columns
    from batchml.training import tune_candidate

    cand = next(c for c in tiny_spec.training.candidates if c.kind == kind)
    model = tune_candidate(cand, tiny_training_set, tiny_spec, trials=1).model
    sample = tiny_training_set.frames["test"].head(200)
    X = model.transform(sample)
    ours = model.contributions(X)
    if kind == "logistic_regression":
        background = model.transform(tiny_training_set.frames["train"])
        masker = shap.maskers.Independent(background, max_samples=len(background))  # the whole training mean
        theirs = shap.LinearExplainer(model.estimator, masker).shap_values(X)
    elif kind == "xgboost":  # explain the trees the predictions use (up to the early-stopping iteration)
        theirs = shap.TreeExplainer(model.estimator.get_booster()[: model.info["best_iteration"] + 1]).shap_values(X)
    else:  # likewise for LightGBM: a booster holding the trees up to the best iteration
        import lightgbm as lgb

        best = model.info["best_iteration"]
        booster = lgb.Booster(model_str=model.estimator.booster_.model_to_string(num_iteration=best))
        theirs = shap.TreeExplainer(booster).shap_values(X)
        theirs = theirs[1] if isinstance(theirs, list) else theirs
        theirs = theirs[:, :, 1] if np.ndim(theirs) == 3 else theirs
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-3)
    if kind != "logistic_regression":  # additivity: contributions + bias = the model's raw margin
        p = model.raw_proba(sample)
        margin = np.log(p / (1 - p))
        bias = margin - ours.sum(axis=1)
        np.testing.assert_allclose(bias, bias[0], atol=1e-4)
    features, per = model.per_feature(ours)
    assert features == model.features  # one-hot columns fold back into their feature
    out = reason_columns(features, per, sample, 3, feature_words(tiny_spec))
    for row in range(len(sample)):
        by_feature = pd.Series(per[row], index=features)
        raising = by_feature[by_feature > 0].sort_values(ascending=False, kind="stable")
        names = [out[f"reason_{i}"][row] for i in (1, 2, 3)]
        assert names == list(raising.index[:3]) + [None] * (3 - min(3, len(raising)))
        lowest = by_feature.idxmin()
        assert out["protective_reason"][row] == (lowest if by_feature[lowest] < 0 else None)
        first = names[0]
        if first is not None:
            assert out["reason_1_impact"][row] == pytest.approx(raising.iloc[0])
            value = sample.iloc[row][first]
            if isinstance(value, str):
                assert out["reason_1_value"][row] == value and out["reason_1_number"][row] is None
            else:
                assert out["reason_1_number"][row] == pytest.approx(value)


def test_chunk_size_does_not_change_the_scores(tiny_spec, tiny_lake, trained_folder, tmp_path):
    """Scoring 3,200 rows 1,000 at a time or all at once gives the same rows (bounded memory, same result)."""
    from batchml.scoring import PinnedModel, score_partition

    features_root, _ = tiny_lake
    frames = [pd.read_parquet(p) for p in sorted((features_root / "tiny").glob("dt=*/part-0.parquet"))[:8]]
    big = pd.concat(frames, ignore_index=True)
    big["as_of_date"] = D
    path = tmp_path / "big.parquet"
    big.to_parquet(path)
    model = joblib.load(f"{trained_folder.run_dir}/selected.joblib")
    out = {}
    for chunk in (1000, 5000):
        data = tiny_spec.model_dump()
        data["scoring"]["chunk_rows"] = chunk
        spec = type(tiny_spec).model_validate(data)
        run = score_partition(spec, path, [PinnedModel("champion", "tiny", 1, model)], tmp_path / f"s{chunk}.parquet",
                              D, "r")
        out[chunk] = pd.read_parquet(run.staged_file).drop(columns=["scored_at"])
    pd.testing.assert_frame_equal(out[1000], out[5000])
    assert len(out[1000]) == len(big)


@pytest.mark.parametrize(("budget", "everyone"), [(None, False), (1e-6, False), (3600.0, True)])
def test_exact_reason_codes_extend_to_what_the_time_budget_allows(budget, everyone, tiny_spec, tiny_lake,
                                                                   trained_folder, tmp_path):
    """No budget or a tiny one: exact codes for the top exact_share only; an ample one: for every row."""
    from batchml.scoring import PinnedModel, score_partition

    features_root, _ = tiny_lake
    path = sorted((features_root / "tiny").glob("dt=*/part-0.parquet"))[0]
    model = joblib.load(f"{trained_folder.run_dir}/candidate_xgboost.joblib")  # a tree model: exact codes cost
    data = tiny_spec.model_dump()
    data["scoring"]["reason_codes"].update(exact_share=0.1, others="none", exact_budget_seconds=budget)
    spec = type(tiny_spec).model_validate(data)
    run = score_partition(spec, path, [PinnedModel("champion", "tiny", 1, model)], tmp_path / "s.parquet", D, "r")
    scores = pd.read_parquet(run.staged_file)
    if everyone:
        assert scores.reasons_exact.all() and scores.reason_1.notna().all()
    else:
        assert 0.05 < scores.reasons_exact.mean() < 0.2
        # exactly the highest scores have them, and the rows without exact codes have none (others: none)
        assert scores[scores.reasons_exact].score.min() >= scores[~scores.reasons_exact].score.max()
        assert scores[~scores.reasons_exact].reason_1.isna().all()
