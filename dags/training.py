"""Airflow training DAGs, `<use case>__training`: one per spec in specs/ (logic: batchml.pipelines.training)."""

from batchml.pipelines.training import training_dags

globals().update(training_dags())
