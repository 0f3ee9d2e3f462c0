-- Retries of creates sent before the downgrade are then new creates again
-- (a 409 for the slug when the first one got through).
DROP TABLE IF EXISTS idempotency_keys;
