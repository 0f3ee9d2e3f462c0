-- The registry of tenant servers: the PostgreSQL servers tenant databases
-- (and schemas) live on. Servers are data, not configuration: an operator
-- adds one with POST /api/servers or `controlplane servers add`, and every
-- tenant row names its server.
--
-- Credentials never leave the control plane, and the catalog keeps as few
-- as it can: url is stored without its password (a server may leave the
-- password to a pgpass file); a password that came with the URL is kept in
-- password_enc only, sealed with AES-256-GCM under SERVER_SECRET_KEY, a key
-- the catalog never sees (a version byte, the 12-byte nonce, then the
-- ciphertext and its tag; the server's name is the additional data, so a
-- sealed password copied onto another row does not open).
CREATE TABLE servers (
    name         text        PRIMARY KEY,
    url          text        NOT NULL,
    password_enc bytea,
    -- How many tenants the server may hold.
    capacity     integer     NOT NULL,
    -- active: takes new tenants; draining: no new tenants; disabled: no new
    -- tenants, and its capacity is not counted.
    status       text        NOT NULL DEFAULT 'active',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT servers_name_format CHECK (name ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND char_length(name) <= 63),
    -- A postgres:// URL with no password in it, in the user info or in a
    -- query parameter. The empty url is the default server's before the
    -- first start has recorded TENANT_DATABASE_URL's (see below).
    CONSTRAINT servers_url_format CHECK (
        (url ~ '^postgres(ql)?://' AND url !~ '^[a-z]+://[^/?#@]*:[^/?#@]*@' AND url !~* '[?&](ssl)?password=')
        OR (name = 'default' AND url = '')),
    CONSTRAINT servers_password_enc_length CHECK (octet_length(password_enc) BETWEEN 29 AND 4096),
    CONSTRAINT servers_capacity_range CHECK (capacity BETWEEN 1 AND 1000000),
    CONSTRAINT servers_status_check CHECK (status IN ('active', 'draining', 'disabled'))
);

-- Every tenant and spare made so far lives on the server of
-- TENANT_DATABASE_URL. That server is registered as 'default' here, before
-- the columns that reference it are added, so the foreign keys hold for the
-- existing rows from the first instant (no deferred constraint, no window
-- without one). The migration cannot know TENANT_DATABASE_URL: the row is
-- a placeholder with an empty url, which serve and `controlplane migrate
-- catalog up` fill at their next start (and update whenever
-- TENANT_DATABASE_URL names another server). Its capacity is the most
-- allowed, so that an install of one server never finds it full; an
-- operator sets a real one with PATCH /api/servers/default.
INSERT INTO servers (name, url, capacity) VALUES ('default', '', 1000000);

-- The default keeps creates working unchanged: a tenant or spare made
-- without naming a server is on 'default'. A server is removed only once
-- nothing references it (the API says so with a 409 first; the foreign keys
-- are the last word).
ALTER TABLE tenants ADD COLUMN server text NOT NULL DEFAULT 'default'
    CONSTRAINT tenants_server_fkey REFERENCES servers (name);
ALTER TABLE tenant_spares ADD COLUMN server text NOT NULL DEFAULT 'default'
    CONSTRAINT tenant_spares_server_fkey REFERENCES servers (name);

-- Per-server counts (GET /api/servers) and the foreign key's check when a
-- server is removed read tenants by server.
CREATE INDEX tenants_server_idx ON tenants (server);

-- The control plane's role owns it; nobody else reads it.
REVOKE ALL ON servers FROM PUBLIC;
