-- The golden360.* settings: defaults, and who may change them.
\set SHOW_CONTEXT never
LOAD 'golden360';
SELECT name, setting, unit, context FROM pg_settings WHERE name LIKE 'golden360.%' ORDER BY name;
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_user;
RESET client_min_messages;
CREATE ROLE regress_user;
SET ROLE regress_user;
SET golden360.data_dir = '/';
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SET golden360.max_record_bytes = '1GB';
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SET golden360.helper_threads = 64;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SET golden360.build_workers = 8;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SET golden360.memory_limit = '64GB';
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SET golden360.quality_gate = 'maybe';
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SET golden360.lock_timeout = '2s';
SHOW golden360.lock_timeout;
RESET ROLE;
DROP ROLE regress_user;
