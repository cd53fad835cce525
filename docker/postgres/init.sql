-- One PostgreSQL server, three databases, one owner role each (docker-compose.yaml mounts this file into
-- /docker-entrypoint-initdb.d/, so it runs once, as the superuser, when the data volume is still empty).
--   airflow    Airflow metadata DB            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
--   warehouse  score warehouse of batchml     BATCHML_WAREHOUSE_URL
--   mlflow     MLflow tracking backend store  mlflow server --backend-store-uri
-- plus batchml_analyst, the read-only role of analysts (BATCHML_WAREHOUSE_READER_ROLE): it may connect to warehouse
-- and owns nothing; batchml's score-table migration grants it SELECT on the score views. Only the roles meant for a
-- database may connect to it. The same roles as `bin/stack` creates (there the writer is called batchml_writer).
-- The passwords are read from the container's environment with psql's \getenv (PostgreSQL 15+), so they come from
-- the same variables as the connection URLs in docker-compose.yaml and no password is written here; an empty one
-- stops the initialisation (there is no default password).
-- Changing a password later: ALTER ROLE ... PASSWORD ...; this script does not run again on an existing volume.

\set ON_ERROR_STOP on
\getenv airflow_password AIRFLOW_DB_PASSWORD
\getenv warehouse_password WAREHOUSE_DB_PASSWORD
\getenv mlflow_password MLFLOW_DB_PASSWORD
\getenv analyst_password ANALYST_DB_PASSWORD

SELECT :'airflow_password' = '' OR :'warehouse_password' = '' OR :'mlflow_password' = ''
       OR :'analyst_password' = '' AS missing_password \gset
\if :missing_password
  \warn 'AIRFLOW_DB_PASSWORD, WAREHOUSE_DB_PASSWORD, MLFLOW_DB_PASSWORD and ANALYST_DB_PASSWORD must all be set (see .env.example)'
  SELECT 1 / 0 AS stop_here;
\endif

CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;

CREATE ROLE batchml LOGIN PASSWORD :'warehouse_password';
CREATE DATABASE warehouse OWNER batchml;

CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;

CREATE ROLE batchml_analyst LOGIN PASSWORD :'analyst_password';
ALTER ROLE batchml_analyst SET default_transaction_read_only = on;

REVOKE ALL ON DATABASE airflow, warehouse, mlflow FROM PUBLIC;
GRANT CONNECT ON DATABASE warehouse TO batchml_analyst;
