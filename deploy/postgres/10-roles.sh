#!/bin/sh
# Runs once, when the postgres container initialises an empty data volume (/docker-entrypoint-initdb.d).
# Three login roles, none of them the superuser the image creates:
#   retailflow_owner  owns the retailflow schema; `retailflow migrate` runs as it (DDL, triggers)
#   retailflow_app    the worker and the HTTP service: rows only (SELECT/INSERT/UPDATE/DELETE, sequences); it
#                     owns no table, so it cannot ALTER TABLE ... DISABLE TRIGGER the ledger's append-only guards
#   temporal          owns the temporal and temporal_visibility databases and nothing else
# Default privileges make every table a migration creates (now and in later revisions) usable by the app role
# without a grant per revision. Passwords come from the environment (compose refuses to start without them) and
# reach SQL as psql variables (:'name' quotes them), never spliced into the script.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v owner_pw="$RETAILFLOW_DB_OWNER_PASSWORD" -v app_pw="$RETAILFLOW_DB_APP_PASSWORD" \
     -v temporal_pw="$TEMPORAL_DB_PASSWORD" <<'SQL'
CREATE ROLE retailflow_owner LOGIN PASSWORD :'owner_pw';
CREATE ROLE retailflow_app LOGIN PASSWORD :'app_pw' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE temporal LOGIN PASSWORD :'temporal_pw' NOSUPERUSER NOCREATEROLE;
CREATE DATABASE retailflow OWNER retailflow_owner;
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
REVOKE ALL ON DATABASE retailflow FROM PUBLIC;
REVOKE ALL ON DATABASE temporal FROM PUBLIC;
REVOKE ALL ON DATABASE temporal_visibility FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE retailflow TO retailflow_app;
\connect retailflow
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO retailflow_owner;
GRANT USAGE ON SCHEMA public TO retailflow_app;
ALTER DEFAULT PRIVILEGES FOR ROLE retailflow_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO retailflow_app;
ALTER DEFAULT PRIVILEGES FOR ROLE retailflow_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO retailflow_app;
ALTER DEFAULT PRIVILEGES FOR ROLE retailflow_owner IN SCHEMA public
    GRANT EXECUTE ON FUNCTIONS TO retailflow_app;
SQL
