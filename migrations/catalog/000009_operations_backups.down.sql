-- Forgets every operation and backup record. The backup files under
-- BACKUP_DIR stay where they are.
DROP TABLE IF EXISTS backups;
DROP TABLE IF EXISTS operations;
