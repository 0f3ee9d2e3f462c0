-- Operator sessions of the fleet console (/console, docs/CONSOLE.md).
--
-- Kept in the catalog, not in a replica's memory, so that a session made
-- through one replica works through every other behind the load balancer,
-- and a logout (the row deleted) ends it on all of them at once.
--
-- id_hash: SHA-256 of the session id the browser holds in its cookie; the
-- id itself is never stored, so reading this table does not let anyone
-- act as a logged-in operator.
-- token_mac: HMAC-SHA256, keyed with the ADMIN_TOKEN of the login, of the
-- session id: a session made under one token does not verify under
-- another, so rotating ADMIN_TOKEN ends every session, and the table holds
-- nothing from which the token can be tested offline without the ids.
-- expires_at: an absolute lifetime; expired rows are refused at once and
-- deleted by the next login.
CREATE TABLE console_sessions (
    id_hash    bytea PRIMARY KEY,
    token_mac  bytea NOT NULL,
    actor      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX console_sessions_expires_at_idx ON console_sessions (expires_at);
