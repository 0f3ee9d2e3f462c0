-- The spare databases and roles themselves stay on the tenant server, marked
-- as spares of this catalog; drop them by hand (docs/OPERATIONS.md) or
-- migrate up again and let the spares reconciler reuse or drop them.
DROP TABLE IF EXISTS tenant_spares;
