DROP TABLE IF EXISTS audit_log;
DROP TABLE IF EXISTS tenant_api_keys;
DROP FUNCTION IF EXISTS notify_api_key_changed();
