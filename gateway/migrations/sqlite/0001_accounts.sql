-- Operator accounts (issue 20, first slice). Times are Unix milliseconds; an account is
-- disabled while `disabled_at` is set. Languages: comma-separated language tags.
CREATE TABLE accounts (
    id            TEXT    PRIMARY KEY NOT NULL,
    username      TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('operator', 'coordinator', 'admin')),
    password_hash TEXT    NOT NULL,
    languages     TEXT    NOT NULL DEFAULT 'ja',
    capacity      INTEGER,
    phone         TEXT,
    disabled_at   INTEGER,
    created_at    INTEGER NOT NULL,
    last_login_at INTEGER
);

CREATE INDEX accounts_role ON accounts (role);
