-- Every console session ends: an operator logs in again after the upgrade that brings it back.
DROP TABLE IF EXISTS console_sessions;
