"""Airflow feature DAGs, `<use case>__features`: one per spec in specs/ (logic: batchml.pipelines.features)."""

from batchml.pipelines.features import dags

globals().update(dags())
