"""The warehouse's generic parts: engines, connection errors that say what to do, strict table names, migrations."""

import pytest
import sqlalchemy as sa

from batchml import warehouse as wh


def test_unreachable_warehouse_says_what_to_check():
    engine = wh.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(wh.WarehouseError, match="cannot reach the warehouse .*Check BATCHML_WAREHOUSE_URL"):
        wh.ping(engine)


def test_a_driver_that_is_not_installed_is_named():
    with pytest.raises(wh.WarehouseError, match="BATCHML_WAREHOUSE_URL: cannot use mysql\\+pymysql://.*install its driver"):
        wh.create_engine("mysql+pymysql://u:secret@db/x")


@pytest.mark.parametrize("name", ["Scores", "1scores", "scores-x", "scores; drop table t", 'a"b', "x" * 70])
def test_identifiers_are_strict(name):
    with pytest.raises(wh.WarehouseError, match="not a valid identifier"):
        wh.check_identifier(name)


def test_a_migration_runs_once_per_warehouse(tmp_path):
    applied = []
    migration = wh.Migration("demo", 1, "a demo table", lambda conn: applied.append(conn.execute(
        sa.text("CREATE TABLE demo (x INTEGER)"))))
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert wh.migrate(wh.engine(url), [migration]) == ["demo v1: a demo table"]
    assert wh.migrate(wh.engine(url), [migration]) == []
    wh._applied.clear()  # a new process: the record in the warehouse, not memory, says it is done
    assert wh.migrate(wh.create_engine(url), [migration]) == []
    assert len(applied) == 1


def test_engines_are_shared_per_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert wh.engine(url) is wh.engine(url)
    assert wh.engine(url) is not wh.engine(f"sqlite:///{tmp_path / 'other.db'}")
