"""The corpus of bad inputs (tests/fixtures/bad_inputs.yaml): each is refused with a message that names what is
wrong and where, and nothing downstream is written or lost (the lake, the landing zone and the warehouse compare
equal before and after).

Landed partitions are damaged in a private copy of the small generated landing zone; cases caught by the raw
checks run in groups (one feature run finds every one of them, each named with its partition), cases that stop a
run at once (a corrupt file, a missing partition) run alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from batchml.errors import BatchMLError, DataValidationError, LandingError

REPO = Path(__file__).resolve().parents[2]
CORPUS = yaml.safe_load((REPO / "tests" / "fixtures" / "bad_inputs.yaml").read_text())
AS_OF = dt.date(2026, 4, 8)  # the small landing zone's date (conftest.SMALL_AS_OF)

pytestmark = pytest.mark.gx


def test_the_corpus_holds_at_least_forty_cases_each_with_its_message():
    cases = [c for group in CORPUS.values() for c in group]
    assert len(cases) >= 40
    assert all(c["expect"] for c in cases) and len({c["id"] for c in cases}) == len(cases)


# Snapshots: nothing written or lost ---------------------------------------------------------------------------------


def tree_digest(*roots: Path) -> dict[str, str]:
    """Every file under `roots` (hidden ones included) with the hash of its content."""
    out = {}
    for root in roots:
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_file():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# Damaging a landed partition ------------------------------------------------------------------------------------------


def _file(root: Path, source: str, day: dt.date) -> Path:
    return sorted((root / source / f"dt={day}").glob("*.parquet"))[0]


def _value(text, type_):
    if isinstance(text, str) and text.startswith("@"):
        return "x" * int(text[1:])
    if pa.types.is_timestamp(type_) and isinstance(text, str):
        return dt.datetime.fromisoformat(text)
    return text


def set_first(table, column, value, n=3, **_):
    values = table.column(column).to_pylist()
    values[:n] = [_value(value, table.schema.field(column).type)] * n
    return table.set_column(table.schema.get_field_index(column), column, pa.array(values, table.schema.field(column).type))


def duplicate_rows(table, n=2, **_):
    return pa.concat_tables([table, table.slice(0, n)])


def cast(table, column, to, **_):
    type_ = pa.timestamp("us") if to == "timestamp[us]" else getattr(pa, to)()
    values = table.column(column)
    if to == "timestamp[us]":
        values = pc.cast(pc.cast(values, pa.timestamp("us", tz="UTC")).cast(pa.int64()), pa.timestamp("us"))
    elif to == "int64":
        values = pc.cast(pc.round(values), pa.int64())
    else:
        values = pc.cast(values, type_)
    return table.set_column(table.schema.get_field_index(column), column, values)


def drop_column(table, column, **_):
    return table.drop([column])


def add_column(table, column, **_):
    return table.append_column(column, pa.array(["x"] * table.num_rows))


def keep_rows(table, rows, **_):
    return table.slice(0, rows)


def shift_time(table, column, hours, **_):
    values = table.column(column).to_pylist()
    values[0] = values[0] + dt.timedelta(hours=hours)
    return table.set_column(table.schema.get_field_index(column), column, pa.array(values, table.schema.field(column).type))


def damage(root: Path, change: str, args: dict) -> dt.date:
    """Apply one corpus change to the landing zone at `root`; returns the damaged partition's date."""
    args = dict(args)
    source, day = args.pop("source"), AS_OF - dt.timedelta(days=args.pop("days_back"))
    folder = root / source / f"dt={day}"
    if change == "remove_partition":
        shutil.rmtree(folder)
    elif change == "only_junk":
        shutil.rmtree(folder)
        folder.mkdir()
        (folder / "README.txt").write_text("the export failed")
    elif change == "truncate":
        path = _file(root, source, day)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3] if args.get("keep") is None else b"")
    elif change == "second_file":
        path = _file(root, source, day)
        table = pq.read_table(path)
        pq.write_table(table.drop([table.column_names[-1]]), folder / "part-late.parquet")
    else:
        path = _file(root, source, day)
        pq.write_table(globals()[change](pq.read_table(path), **args), path)
    return day


def _run_features_until_publish(spec, settings):
    """What a feature run does before Spark: landed partitions, then raw checks (the failures stop here)."""
    from batchml.partitions import landed_raw
    from batchml.validation import validate_raw_partitions

    return validate_raw_partitions(spec, settings, landed_raw(spec, settings, AS_OF), "bad-input")


@pytest.fixture
def lake(churn_spec, landing_copy, isolated_home, tmp_path):
    """Settings on a private landing copy, with a feature partition already published for the date (which a failed
    run must leave as it is)."""
    from batchml.storage import feature_partition_dir, publish_file

    settings = isolated_home(landing_url=landing_copy.url)
    staged = tmp_path / "previous.parquet"
    pq.write_table(pa.table({"customer_id": ["C1"], "as_of_date": [AS_OF]}), staged)
    publish_file(staged, feature_partition_dir(settings.features_root, "churn", AS_OF), {"rows": 1, "run": "old"})
    return settings


GX_CASES = [c for c in CORPUS["landed"] if "error" not in c]
STOPPING_CASES = [c for c in CORPUS["landed"] if "error" in c]


@pytest.mark.parametrize("group", [GX_CASES[0::2], GX_CASES[1::2]], ids=["group-a", "group-b"])
def test_damaged_partitions_are_each_named_by_one_run(group, churn_spec, lake):
    root = Path(lake.landing_url)
    days = {case["id"]: damage(root, case["change"], case["args"]) for case in group}
    before = tree_digest(lake.features_root, root, lake.home / "warehouse.db")
    with pytest.raises(DataValidationError) as err:
        _run_features_until_publish(churn_spec, lake)
    message = str(err.value)
    for case in group:
        for fragment in case["expect"]:
            fragment = fragment.format(day=days[case["id"]])
            assert fragment in message, f"{case['id']}: {fragment!r} not in:\n{message}"
    assert "Nothing was published" in message
    assert tree_digest(lake.features_root, root, lake.home / "warehouse.db") == before


@pytest.mark.parametrize("case", STOPPING_CASES, ids=[c["id"] for c in STOPPING_CASES])
def test_unreadable_or_missing_partitions_stop_the_run_naming_them(case, churn_spec, lake):
    root = Path(lake.landing_url)
    day = damage(root, case["change"], case["args"])
    before = tree_digest(lake.features_root, root)
    with pytest.raises(LandingError) as err:
        _run_features_until_publish(churn_spec, lake)
    for fragment in case["expect"]:
        assert fragment.format(day=day) in str(err.value), str(err.value)
    assert tree_digest(lake.features_root, root) == before


# Ingesting a file -------------------------------------------------------------------------------------------------------


FIRST_DAY = dt.date(2026, 1, 1)  # the small landing zone's bulk load of customers


def _ingest_file(tmp_path: Path, small_landing, how: dict) -> str:
    base = pq.read_table(_file(Path(small_landing.url), "customers", FIRST_DAY)).to_pandas()
    frame = base.head(40).copy()
    frame["signup_ts"] = frame["signup_ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    if how.get("drop"):
        frame = frame.drop(columns=[how["drop"]])
    for column, value in (how.get("set") or {}).items():
        frame[column] = frame[column].astype(object)
        frame.loc[frame.index[0], column] = _value(value, pa.string())
    if how.get("duplicate"):
        frame.loc[frame.index[1], "customer_id"] = frame.loc[frame.index[0], "customer_id"]
    if "rows" in how:
        frame = frame.head(how["rows"])
    path = tmp_path / f"customers{how.get('suffix', '.csv')}"
    if how.get("missing"):
        return str(path)
    frame.to_csv(path, index=False)
    return str(path)


INGEST_CASES = CORPUS["ingest"]


@pytest.mark.parametrize("case", INGEST_CASES, ids=[c["id"] for c in INGEST_CASES])
def test_a_bad_file_is_refused_by_ingest_and_lands_nothing(case, landing_copy, small_landing, isolated_home, tmp_path,
                                                          capsys, monkeypatch):
    from batchml.cli import main

    isolated_home(landing_url=landing_copy.url)
    monkeypatch.setenv("BATCHML_SPECS_DIR", str(REPO / "specs"))
    path = _ingest_file(tmp_path, small_landing, case["file"])
    root = Path(landing_copy.url)
    before = tree_digest(root)
    source = case["file"].get("source", "customers")
    assert main(["ingest", "churn", source, path, "--date", str(FIRST_DAY)]) == 2
    err = capsys.readouterr().err
    for fragment in case["expect"]:
        assert fragment in err, err
    assert tree_digest(root) == before


def test_a_good_file_replaces_the_day_whole_and_says_how_many_rows_it_replaced(landing_copy, small_landing,
                                                                                isolated_home, tmp_path, capsys,
                                                                                monkeypatch):
    """A re-delivered day never adds to the old one: the generator's part files are replaced by the new file."""
    from batchml.cli import main

    isolated_home(landing_url=landing_copy.url)
    monkeypatch.setenv("BATCHML_SPECS_DIR", str(REPO / "specs"))
    day = FIRST_DAY
    folder = Path(landing_copy.url) / "customers" / f"dt={day}"
    old_rows = pq.read_table(folder).num_rows
    path = _ingest_file(tmp_path, small_landing, {})
    assert main(["ingest", "churn", "customers", path, "--date", str(day)]) == 0
    out = capsys.readouterr().out
    assert f"replaced the {old_rows:,} rows the partition held before" in out
    assert [p.name for p in folder.iterdir()] == ["part-0.parquet"] and pq.read_table(folder).num_rows == 40


# Specs ---------------------------------------------------------------------------------------------------------------


def _spec_variant(tmp_path: Path, edit) -> Path:
    specs = tmp_path / "specs"
    specs.mkdir()
    text = (REPO / "specs" / "churn.yaml").read_text()
    if edit == "duplicate_key":
        (specs / "churn.yaml").write_text(text + "\nname: churn\n")
    elif edit == "yml_suffix":
        (specs / "churn.yml").write_text(text)
    else:
        data = yaml.safe_load(text)
        for dotted, value in edit["set"].items():
            node, *path, last = [data, *dotted.split(".")]
            for key in path:
                node = node.setdefault(key, {})
            node[last] = value
        (specs / "churn.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return specs


SPEC_CASES = CORPUS["spec"]


@pytest.mark.parametrize("case", SPEC_CASES, ids=[c["id"] for c in SPEC_CASES])
def test_a_bad_spec_names_the_field_and_is_reported_by_check(case, tmp_path, isolated_home, monkeypatch, capsys,
                                                             airflow_db):
    from batchml.cli import main
    from batchml.specs import discover

    specs = _spec_variant(tmp_path, case["edit"])
    monkeypatch.setenv("BATCHML_SPECS_DIR", str(specs))
    isolated_home()
    if case.get("at") != "check":
        with pytest.raises(BatchMLError) as err:
            found = discover(specs)
            if found.errors:
                raise BatchMLError("\n".join(found.errors.values()))
        for fragment in case["expect"]:
            assert fragment in str(err.value), str(err.value)
    assert main(["check"]) == 2
    out = capsys.readouterr().out
    for fragment in case["expect"]:
        assert fragment in out, out


# Environment -------------------------------------------------------------------------------------------------------


ENV_CASES = CORPUS["environment"]


@pytest.mark.parametrize("case", ENV_CASES, ids=[c["id"] for c in ENV_CASES])
def test_a_bad_setting_names_the_variable_and_what_to_do(case, tmp_path, isolated_home, monkeypatch, capsys,
                                                        airflow_db):
    from batchml.cli import main

    isolated_home()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for var, value in case["env"].items():
        monkeypatch.setenv(var, value.format(file=blocker))
    code = main(["check"])
    captured = capsys.readouterr()
    assert code == 2
    for fragment in case["expect"]:
        assert fragment in captured.out + captured.err, captured.out + captured.err
