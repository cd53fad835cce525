"""Airflow import errors for invalid specs: each names the spec file, the field and the reason, and the DAGs it would
generate. The other DAG files leave invalid specs out, so every valid use case keeps its DAGs. (Airflow's safe mode
parses only files that mention both "airflow" and "dag", as this docstring does.)"""

from batchml.pipelines.common import raise_spec_errors

raise_spec_errors()
