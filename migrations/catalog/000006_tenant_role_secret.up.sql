-- The secret tenant database roles' passwords are derived from when the
-- operator does not set TENANT_ROLE_SECRET: 32 random bytes, generated once
-- by the first control plane that needs it and kept here. (It used to be
-- derived from catalog_identity, which every tenant database and role
-- carries in its COMMENT, readable by every login role: any tenant could
-- compute every other tenant's password.) Only the control plane's own role,
-- which owns this table, may read it; tenant roles cannot even connect to
-- the catalog database (serve revokes CONNECT from PUBLIC on it).
CREATE TABLE tenant_role_secret (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    secret     bytea       NOT NULL CHECK (octet_length(secret) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
-- PUBLIC gets nothing on a new table unless default privileges say
-- otherwise: this makes sure of it whatever they say.
REVOKE ALL ON tenant_role_secret FROM PUBLIC;

-- Which secret the tenant roles' passwords were last all set from, as a tag
-- (an HMAC of the secret under a fixed label: it reveals neither the secret
-- nor any password). A control plane starting with a secret of another tag
-- (the first start of this version, a new TENANT_ROLE_SECRET, a rotation cut
-- short) resets every tenant role's password first, then records its tag.
CREATE TABLE tenant_role_passwords (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    secret_tag text        NOT NULL,
    -- How many tenant roles were set in that run.
    roles      integer     NOT NULL,
    set_at     timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON tenant_role_passwords FROM PUBLIC;
