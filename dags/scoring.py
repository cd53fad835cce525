"""Airflow scoring DAGs, `<use case>__scoring`: one per spec in specs/ (logic: batchml.pipelines.scoring)."""

from batchml.pipelines.scoring import dags

globals().update(dags())
