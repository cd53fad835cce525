"""DAG builders: one module per DAG kind, each turning every spec into one Airflow DAG.

Builders only wire tasks; every task body is a call into the lifecycle modules of `batchml` (features,
validation, ...), imported inside the task so that parsing a DAG file stays cheap.
"""
