#!/usr/bin/env bash
# First start of the database container: the extensions, and passwords for
# the two login roles the other containers use.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v authenticator_password="$GOLDEN360_AUTHENTICATOR_PASSWORD" \
     -v monitor_password="$GOLDEN360_MONITOR_PASSWORD" <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_cron;
CREATE EXTENSION IF NOT EXISTS golden360;
ALTER ROLE golden360_authenticator PASSWORD :'authenticator_password';
ALTER ROLE golden360_monitor PASSWORD :'monitor_password';
SQL
if [ -n "${GOLDEN360_SCHEDULE:-}" ]; then
    # A psql variable, quoted by psql (:'schedule'), never spliced into SQL.
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
         -v schedule="$GOLDEN360_SCHEDULE" <<'SQL'
SELECT golden360.schedule_pipeline(:'schedule', '/srv/olist');
SQL
fi
