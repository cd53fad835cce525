"""Airflow model-admin DAGs, `<use case>__model_admin`: promote or roll back (logic: batchml.pipelines.training)."""

from batchml.pipelines.training import model_admin_dags

globals().update(model_admin_dags())
