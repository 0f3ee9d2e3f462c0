-- Reverts 000001_init: drops every table the up file created, children before
-- parents. Indexes, constraints and identity sequences go with their tables.
-- No CASCADE on purpose: if a later object depends on these tables, fail
-- loudly instead of silently dropping it. Unqualified, like the up file, so it
-- works in database mode and inside a tenant schema.
DROP TABLE IF EXISTS contact_emails;
DROP TABLE IF EXISTS contact_phones;
DROP TABLE IF EXISTS contacts;
DROP TABLE IF EXISTS cdrs;
DROP TABLE IF EXISTS rates;
DROP TABLE IF EXISTS dids;
DROP TABLE IF EXISTS queue_members;
DROP TABLE IF EXISTS queues;
DROP TABLE IF EXISTS extensions;
