-- One PostgreSQL server, three databases, one owner role each (docker-compose.yaml mounts this file into
-- /docker-entrypoint-initdb.d/, so it runs once, as the superuser, when the data volume is still empty).
--   airflow    Airflow metadata DB            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
--   warehouse  score warehouse of batchml     BATCHML_WAREHOUSE_URL
--   mlflow     MLflow tracking backend store  mlflow server --backend-store-uri
-- The passwords are read from the container's environment with psql's \getenv (PostgreSQL 15+), so they come from
-- the same variables as the connection URLs in docker-compose.yaml and no password is written here.
-- Changing a password later: ALTER ROLE ... PASSWORD ...; this script does not run again on an existing volume.

\set ON_ERROR_STOP on
\getenv airflow_password AIRFLOW_DB_PASSWORD
\getenv warehouse_password WAREHOUSE_DB_PASSWORD
\getenv mlflow_password MLFLOW_DB_PASSWORD

CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;

CREATE ROLE batchml LOGIN PASSWORD :'warehouse_password';
CREATE DATABASE warehouse OWNER batchml;

CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
