-- Golden 360 bootstrap: the schemas the extension owns and the bookkeeping
-- tables every layer shares. Runs first in CREATE EXTENSION. Every object
-- is schema-qualified, and each schema is created here so that
-- DROP EXTENSION golden360 CASCADE removes all of it.

CREATE SCHEMA golden360;
COMMENT ON SCHEMA golden360 IS 'golden360: procedures, settings tables, audit trail';
-- Internal functions: no role but the extension's owner gets USAGE on this
-- schema, so nothing in it can be called by anyone else, whatever its grants.
CREATE SCHEMA golden360_internal;
COMMENT ON SCHEMA golden360_internal IS 'golden360: internal functions, usable by the extension''s owner only';
CREATE SCHEMA bronze;
COMMENT ON SCHEMA bronze IS
    'golden360: raw Olist CSV rows exactly as parsed, append-only, with lineage';
CREATE SCHEMA silver;
COMMENT ON SCHEMA silver IS 'golden360: typed, validated, deduplicated Olist tables';
CREATE SCHEMA gold;
COMMENT ON SCHEMA gold IS 'golden360: identity bridge and unified customer 360';

-- Append-only enforcement. Statement-level triggers fire even when no row
-- matches, so "DELETE FROM bronze.x WHERE false" is refused too: the point
-- is that nobody edits the audit trail, not that an edit happened to be empty.
CREATE FUNCTION golden360_internal.refuse_bronze_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on %.% is not allowed: bronze is append-only',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Bronze keeps every ingested row for audit. Load corrected '
                  || 'files with golden360.ingest_bronze(); silver takes the latest batch.';
END
$$;

CREATE FUNCTION golden360_internal.make_append_only(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION golden360_internal.refuse_bronze_change()', target);
    EXECUTE format('CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION golden360_internal.refuse_bronze_change()', target);
END
$$;
COMMENT ON FUNCTION golden360_internal.make_append_only(regclass) IS
    'Refuses UPDATE, DELETE and TRUNCATE on a table (used on every bronze table).';

-- One row per ingest_bronze() call, written when the call finishes. The
-- batch id is drawn first, so rows can carry it while they load; the
-- foreign keys below are deferred to commit for that reason.
CREATE SEQUENCE golden360.bronze_batch_seq;
CREATE TABLE golden360.bronze_batches (
    batch_id    bigint PRIMARY KEY,
    source_dir  text        NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    metadata    jsonb       NOT NULL
);
COMMENT ON TABLE golden360.bronze_batches IS
    'Audit trail: one row per golden360.ingest_bronze() call, metadata = the batch''s metadata.json';
SELECT golden360_internal.make_append_only('golden360.bronze_batches');

-- The idempotency index: every file content ever loaded, by SHA-256.
CREATE TABLE golden360.bronze_files (
    sha256     text   PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    batch_id   bigint NOT NULL REFERENCES golden360.bronze_batches DEFERRABLE INITIALLY DEFERRED,
    file_name  text   NOT NULL,
    table_name text   NOT NULL,
    bytes      bigint NOT NULL,
    rows       bigint NOT NULL,
    rejected   bigint NOT NULL
);
COMMENT ON TABLE golden360.bronze_files IS
    'Every file content loaded into bronze, by SHA-256: a file with a known sha256 is skipped';
SELECT golden360_internal.make_append_only('golden360.bronze_files');

CREATE TABLE bronze.rejected_rows (
    batch_id    bigint NOT NULL REFERENCES golden360.bronze_batches DEFERRABLE INITIALLY DEFERRED,
    source_file text   NOT NULL,
    row_number  bigint NOT NULL,
    line_number bigint NOT NULL,
    reason      text   NOT NULL,
    raw         bytea  NOT NULL,
    PRIMARY KEY (batch_id, source_file, row_number)
);
COMMENT ON TABLE bronze.rejected_rows IS
    'CSV records that could not be stored as a row (wrong field count, invalid UTF-8, NUL byte), '
    'with their exact bytes; row_number counts data records like bronze._row_number';
SELECT golden360_internal.make_append_only('bronze.rejected_rows');

CREATE FUNCTION golden360.bronze_manifest(batch_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    manifest jsonb;
BEGIN
    SELECT b.metadata INTO manifest FROM golden360.bronze_batches b WHERE b.batch_id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'bronze batch % does not exist', $1
            USING ERRCODE = 'no_data_found',
                  HINT = 'SELECT batch_id, source_dir, finished_at FROM golden360.bronze_batches lists the batches.';
    END IF;
    RETURN manifest;
END
$$;
COMMENT ON FUNCTION golden360.bronze_manifest(bigint) IS
    'The metadata.json of a bronze batch: per file name, sha256, bytes, rows, rejected, status; '
    'extension version; database user';

-- The extension's roles. Roles are cluster-wide, so each may already exist
-- from another database, or be created at this very moment by another
-- database's CREATE EXTENSION: a check-then-create would race, so create
-- and tolerate the duplicate. What each may call: sql/grants.sql.
--   golden360_loader   who may ingest besides superusers (NOLOGIN group: GRANT golden360_loader TO alice)
--   golden360_operator who may run the pipeline and its steps (a loader too)
--   golden360_authenticator, golden360_anon, golden360_reader   the API's (sql/api.sql)
--   golden360_monitor  the metrics exporter's login (no password: the DBA sets one)
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM (VALUES
            ('golden360_loader', 'NOLOGIN'),
            ('golden360_operator', 'NOLOGIN'),
            ('golden360_authenticator', 'LOGIN NOINHERIT'),
            ('golden360_anon', 'NOLOGIN'),
            ('golden360_reader', 'NOLOGIN'),
            ('golden360_monitor', 'LOGIN')) AS roles(name, options)
    LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I %s', r.name, r.options);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
    -- Granted once per cluster (a repeated GRANT prints a NOTICE; two at
    -- once may collide on the catalog's unique index).
    IF NOT pg_has_role('golden360_operator', 'golden360_loader', 'MEMBER') THEN
        BEGIN
            GRANT golden360_loader TO golden360_operator;
        EXCEPTION WHEN unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;
