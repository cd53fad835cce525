"""Airflow monitoring DAGs, `<use case>__monitoring`: one per spec in specs/ (logic: batchml.pipelines.monitoring)."""

from batchml.pipelines.monitoring import dags

globals().update(dags())
