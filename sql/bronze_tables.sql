-- One bronze table per Olist file, derived from golden360.source_files()
-- (the registry in src/olist.rs): every CSV column as text, then lineage.
-- ingest_bronze() writes these tables with heap multi-inserts (which keep
-- the lineage index up to date) and finds the lineage columns by name, so
-- keep their names.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT * FROM golden360.source_files() LOOP
        EXECUTE format(
            'CREATE TABLE bronze.%I (%s, '
            '_batch_id bigint NOT NULL, _source_file text NOT NULL, '
            '_row_number bigint NOT NULL, _ingested_at timestamptz NOT NULL)',
            f.table_name,
            (SELECT string_agg(format('%I text', c), ', ' ORDER BY n)
               FROM unnest(f.columns) WITH ORDINALITY AS u(c, n)));
        EXECUTE format('COMMENT ON TABLE bronze.%I IS %L', f.table_name,
            'Raw rows of ' || f.file_name || ': fields exactly as parsed, append-only');
        PERFORM golden360_internal.make_append_only(format('bronze.%I', f.table_name)::regclass);
        -- A batch's rows: what an incremental silver refresh reads instead
        -- of all of bronze. BRIN, because a batch's rows are contiguous at
        -- the heap's end and a BRIN index costs a load next to nothing.
        EXECUTE format('CREATE INDEX %I ON bronze.%I USING brin (_batch_id)', f.table_name || '_by_batch',
                       f.table_name);
    END LOOP;
END
$$;

