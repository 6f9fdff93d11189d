-- Operator accounts (issue 20, first slice). Times are Unix milliseconds; an account is
-- disabled while `disabled_at` is set. Languages: comma-separated language tags.
CREATE TABLE accounts (
    id            TEXT    PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('operator', 'coordinator', 'admin')),
    password_hash TEXT    NOT NULL,
    languages     TEXT    NOT NULL DEFAULT 'ja',
    capacity      BIGINT,
    phone         TEXT,
    disabled_at   BIGINT,
    created_at    BIGINT  NOT NULL,
    last_login_at BIGINT
);

CREATE INDEX accounts_role ON accounts (role);
