-- People who may sign in to the dashboard (``hub users add NAME``): the
-- password is kept only as its scrypt hash (salt and parameters in the text).
CREATE TABLE dashboard_users (
    username      text PRIMARY KEY,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Signed-in sessions: the cookie carries a random token, signed; the table
-- keeps its hash, so signing out (or expiry) ends it for every copy.
CREATE TABLE dashboard_sessions (
    token_hash text PRIMARY KEY,
    username   text NOT NULL REFERENCES dashboard_users (username) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);

-- The key that signs session cookies: made once, shared by every hub process.
CREATE TABLE dashboard_keys (
    name  text PRIMARY KEY,
    key   bytea NOT NULL
);
