#!/usr/bin/env bash
# First start of the database container: the extensions, and passwords for
# the two login roles the other containers use. On a Citus coordinator
# (GOLDEN360_CITUS_WORKERS: the workers, as host or host:port), the workers are
# registered first, so CREATE EXTENSION reaches them; a Citus worker
# (GOLDEN360_NODE=worker) gets golden360 from its coordinator and does
# nothing here.
set -euo pipefail
if [ "${GOLDEN360_NODE:-}" != worker ]; then
    for worker in ${GOLDEN360_CITUS_WORKERS:-}; do
        host=${worker%:*} port=5432
        [ "$host" = "$worker" ] || port=${worker##*:}
        until pg_isready -q -h "$host" -p "$port"; do sleep 1; done
        psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -v host="$host" -v port="$port" <<'SQL'
SELECT citus_add_node(:'host', :'port'::integer)
 WHERE NOT EXISTS (SELECT FROM pg_dist_node WHERE nodename = :'host' AND nodeport = :'port'::integer);
SQL
    done
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
fi
