"""batchml: Airflow-orchestrated batch ML, generated from one YAML spec per use case.

Modules follow the lifecycle of one use case, from a landed file to a row in the score table:

  settings, specs          configuration: environment variables; the use-case specs
  storage, partitions      where data lives (landing zone, lake, atomic publish); which partitions a run reads
  generate, fraud_data,    synthetic data sets; a user's own file checked and landed
  ingest
  features, event_features the Spark feature jobs, point in time: a population as of a date; each event as of its
  sparkconf                own time (an event entity); the Spark settings both share
  validation               Great Expectations suites and their runs (raw data, features, scores)
  datasets, models,        training sets; the model object and its calibration; candidates and tuning
  training
  metrics, evaluation      shared metric functions; test-window evaluation, SHAP, the model card
  registry, gate           MLflow runs, versions and aliases; the champion/challenger gate and its record
  scoring, score_table     pinned models, chunked scoring, reason codes; the analysts' table and its publishing
  warehouse                SQLAlchemy engines, versioned DDL, bulk loads, atomic swaps
  drift, monitoring,       drift statistics; realized performance and the retraining policy; the drift report
  drift_report
  reports, results         HTML pages and charts; the typed results one step hands the next
  pipelines/               the Airflow wiring: one module per DAG kind (the only place that imports Airflow)
  cli, demo, localpg,      the `batchml` command, the demo, a throwaway PostgreSQL, the production-like stack
  stack
"""
