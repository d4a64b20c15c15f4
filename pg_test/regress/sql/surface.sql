-- Who may call what: every routine in golden360's schemas that a role
-- other than the owner may execute (the README's table), and that no
-- internal one is among them.
\set SHOW_CONTEXT never
SELECT p.oid::regprocedure AS routine, string_agg(g.name, ', ' ORDER BY g.name) AS granted_to
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a ON a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
  CROSS JOIN LATERAL (SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END AS name) g
 WHERE n.nspname IN ('golden360', 'golden360_internal', 'api')
 GROUP BY 1 ORDER BY p.oid::regprocedure::text;
SELECT count(*) AS internal_routines FROM pg_proc WHERE pronamespace = 'golden360_internal'::regnamespace;
SET ROLE golden360_operator;
SELECT * FROM golden360_internal.build_gold();
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
