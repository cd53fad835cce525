# Environment of the embedded local setup. Source it to use `airflow` and `batchml` by hand:
#   source bin/env.sh
# Values already set in your shell or in .env win over these defaults (see .env.example).
BATCHML_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BATCHML_REPO
if [ -f "$BATCHML_REPO/.env" ]; then
  set -a
  # shellcheck disable=SC1091
  . "$BATCHML_REPO/.env"
  set +a
fi
export AIRFLOW_HOME="${AIRFLOW_HOME:-$BATCHML_REPO/.local/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$BATCHML_REPO/dags}"
export AIRFLOW__CORE__PLUGINS_FOLDER="${AIRFLOW__CORE__PLUGINS_FOLDER:-$BATCHML_REPO/plugins}"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
# SQLite metadata DB: keep concurrency small
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG="${AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG:-4}"
export GX_ANALYTICS_ENABLED="${GX_ANALYTICS_ENABLED:-false}"
# The Spark connection the feature DAGs use: local[*] here; point its host at a cluster to scale out.
if [ -z "${AIRFLOW_CONN_BATCHML_SPARK:-}" ]; then
  export AIRFLOW_CONN_BATCHML_SPARK='{"conn_type": "spark", "host": "local[*]", "extra": {"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "2g", "spark.ui.showConsoleProgress": "false"}}'
fi
export PATH="$BATCHML_REPO/.venv/bin:$PATH"
