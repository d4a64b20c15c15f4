-- The helpers medallion.sql calls, for PostgreSQL: SQL functions that the
-- planner inlines. Each follows one line of the SPEC's "Precise rules".
-- (The DuckDB twin, prelude.duckdb.sql, defines the same names.)

-- Trimmed text, NULL when blank (space, tab, CR, LF).
CREATE FUNCTION blank_null(t text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT nullif(btrim(t, E' \t\r\n'), '') $$;
-- An id: kept as it came, NULL when blank.
CREATE FUNCTION id_or_null(t text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN btrim(t, E' \t\r\n') <> '' THEN t END $$;
-- City or state: trimmed, inner runs of space collapsed, Unicode upper case.
CREATE FUNCTION place(t text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT upper(regexp_replace(blank_null(t), E'[ \t\r\n]+', ' ', 'g')) $$;
CREATE FUNCTION is_integer(t text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT t ~ '^[+-]?[0-9]{1,9}$' $$;
CREATE FUNCTION to_int(t text) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT t::integer $$;
-- A zip: digits only, at most 9 once leading zeros go; NULL stays NULL.
CREATE FUNCTION is_zip(t text) RETURNS boolean LANGUAGE sql IMMUTABLE AS
$$ SELECT t ~ '^[0-9]+$' AND length(ltrim(t, '0')) <= 9 $$;
CREATE FUNCTION zip_value(t text) RETURNS integer LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN t IS NOT NULL THEN coalesce(nullif(ltrim(t, '0'), ''), '0')::integer END $$;
CREATE FUNCTION idiv(a bigint, b bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$ SELECT a / b $$;
-- Money in cents, rounded half away from zero (numeric's round is).
CREATE FUNCTION money_cents(t text) RETURNS bigint LANGUAGE sql IMMUTABLE AS
$$ SELECT (round(t::numeric, 2) * 100)::bigint $$;
-- Money: [+-]?[0-9]{1,8}(.[0-9]+)? whose cents fit numeric(10,2).
CREATE FUNCTION is_money(t text) RETURNS boolean LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN t ~ '^[+-]?[0-9]{1,8}(\.[0-9]+)?$' THEN abs(round(t::numeric, 2)) <= 99999999.99 ELSE false END $$;
CREATE FUNCTION is_double(t text) RETURNS boolean LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN t ~ '^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$'
               THEN abs(t::numeric) < 1e300 AND (t::numeric = 0 OR abs(t::numeric) > 1e-300) ELSE false END $$;
CREATE FUNCTION to_double(t text) RETURNS double precision LANGUAGE sql IMMUTABLE AS $$ SELECT t::double precision $$;
-- A real calendar date, optionally with a time after a space or T.
CREATE FUNCTION is_timestamp(t text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN t ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}:[0-9]{2})?$' THEN
    substr(t, 6, 2)::int BETWEEN 1 AND 12
    AND substr(t, 9, 2)::int BETWEEN 1 AND
        CASE WHEN substr(t, 6, 2)::int IN (4, 6, 9, 11) THEN 30
             WHEN substr(t, 6, 2)::int <> 2 THEN 31
             WHEN (substr(t, 1, 4)::int % 4 = 0 AND substr(t, 1, 4)::int % 100 <> 0) OR substr(t, 1, 4)::int % 400 = 0 THEN 29
             ELSE 28 END
    AND (length(t) = 10 OR (substr(t, 12, 2)::int <= 23 AND substr(t, 15, 2)::int <= 59 AND substr(t, 18, 2)::int <= 59))
ELSE false END $$;
CREATE FUNCTION to_timestamp_of(t text) RETURNS timestamp LANGUAGE sql IMMUTABLE AS
$$ SELECT replace(t, 'T', ' ')::timestamp $$;
CREATE FUNCTION sha256_hex(t text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT encode(sha256(convert_to(t, 'UTF8')), 'hex') $$;
-- Byte order for text: the peer's database is created with LC_COLLATE C.
