-- The helpers medallion.sql calls, for DuckDB: macros of the same names as
-- prelude.postgres.sql's functions, with the same meaning.

CREATE MACRO blank_null(t) AS nullif(trim(t, E' \t\r\n'), '');
CREATE MACRO id_or_null(t) AS CASE WHEN trim(t, E' \t\r\n') <> '' THEN t END;
CREATE MACRO place(t) AS upper(regexp_replace(blank_null(t), E'[ \t\r\n]+', ' ', 'g'));
CREATE MACRO is_integer(t) AS regexp_full_match(t, '[+-]?[0-9]{1,9}');
CREATE MACRO to_int(t) AS TRY_CAST(t AS INTEGER);
CREATE MACRO is_zip(t) AS regexp_full_match(t, '[0-9]+') AND length(ltrim(t, '0')) <= 9;
CREATE MACRO zip_value(t) AS CASE WHEN t IS NOT NULL THEN TRY_CAST(coalesce(nullif(ltrim(t, '0'), ''), '0') AS INTEGER) END;
CREATE MACRO idiv(a, b) AS a // b;
-- Cents from the text itself: whole part, two decimals, and half away from
-- zero on the third (a cast to DECIMAL would round twice).
CREATE MACRO money_cents(t) AS
    (CASE WHEN starts_with(t, '-') THEN -1 ELSE 1 END) * (
        TRY_CAST(regexp_extract(t, '^[+-]?([0-9]+)', 1) AS BIGINT) * 100
        + TRY_CAST(substr(rpad(regexp_extract(t, '\.([0-9]*)$', 1), 3, '0'), 1, 2) AS BIGINT)
        + CASE WHEN substr(rpad(regexp_extract(t, '\.([0-9]*)$', 1), 3, '0'), 3, 1) >= '5' THEN 1 ELSE 0 END);
CREATE MACRO is_money(t) AS
    coalesce(regexp_full_match(t, '[+-]?[0-9]{1,8}(\.[0-9]+)?') AND abs(money_cents(t)) <= 9999999999, false);
CREATE MACRO is_double(t) AS
    coalesce(regexp_full_match(t, '[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?')
             AND abs(TRY_CAST(t AS DOUBLE)) < 1e300
             AND (TRY_CAST(t AS DOUBLE) = 0 OR abs(TRY_CAST(t AS DOUBLE)) > 1e-300), false);
CREATE MACRO to_double(t) AS TRY_CAST(t AS DOUBLE);
CREATE MACRO is_timestamp(t) AS coalesce(
    regexp_full_match(t, '[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}:[0-9]{2})?')
    AND TRY_CAST(substr(t, 6, 2) AS INTEGER) BETWEEN 1 AND 12
    AND TRY_CAST(substr(t, 9, 2) AS INTEGER) BETWEEN 1 AND
        CASE WHEN TRY_CAST(substr(t, 6, 2) AS INTEGER) IN (4, 6, 9, 11) THEN 30
             WHEN TRY_CAST(substr(t, 6, 2) AS INTEGER) <> 2 THEN 31
             WHEN (TRY_CAST(substr(t, 1, 4) AS INTEGER) % 4 = 0 AND TRY_CAST(substr(t, 1, 4) AS INTEGER) % 100 <> 0)
                  OR TRY_CAST(substr(t, 1, 4) AS INTEGER) % 400 = 0 THEN 29
             ELSE 28 END
    AND (length(t) = 10 OR (TRY_CAST(substr(t, 12, 2) AS INTEGER) <= 23 AND TRY_CAST(substr(t, 15, 2) AS INTEGER) <= 59
                            AND TRY_CAST(substr(t, 18, 2) AS INTEGER) <= 59)), false);
CREATE MACRO to_timestamp_of(t) AS TRY_CAST(replace(t, 'T', ' ') AS TIMESTAMP);
CREATE MACRO sha256_hex(t) AS sha256(t);
