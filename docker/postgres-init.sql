-- Runs once, when the postgres service starts on an EMPTY data volume (the official image
-- skips /docker-entrypoint-initdb.d/ on an existing one). On an old volume, create it by hand:
--   docker compose exec postgres sh -c 'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
--     -c "CREATE DATABASE mlflow"'
-- POSTGRES_DB (default mspe) holds the Optuna studies; MLflow gets its own database because
-- Optuna and MLflow both keep their schema revision in a table named alembic_version, so the
-- two cannot share one schema. Owner: POSTGRES_USER, the user this script runs as.
CREATE DATABASE mlflow;
