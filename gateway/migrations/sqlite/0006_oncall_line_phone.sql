-- On-call alerts by LINE and by phone (issue 21): a coordinator's own LINE account, linked once
-- with a one-time code, and a phone number to be called. Times are Unix milliseconds.

-- Whether a linked LINE account is paged (a person may keep it linked and turn it off), and
-- the number a phone alert calls (the coordinator's own; never logged).
ALTER TABLE oncall_channels ADD COLUMN line_enabled INTEGER NOT NULL DEFAULT 1;
ALTER TABLE oncall_channels ADD COLUMN phone TEXT;

-- A coordinator's linked LINE account: the LINE channel it wrote to, and its LINE user id
-- sealed (XChaCha20-Poly1305 under a key derived from that channel's secret, the account id as
-- associated data). The user id is never stored in plaintext, in a key or in a log line.
CREATE TABLE oncall_line_links (
    account_id  TEXT    PRIMARY KEY NOT NULL,
    channel_id  TEXT    NOT NULL,
    sealed_user BLOB    NOT NULL,
    linked_at   INTEGER  NOT NULL
);

-- One-time link codes: only the SHA-256 of the code is kept; a code works once, until
-- `expires_at`.
CREATE TABLE oncall_link_codes (
    code_hash  TEXT    PRIMARY KEY NOT NULL,
    account_id TEXT    NOT NULL,
    created_at INTEGER  NOT NULL,
    expires_at INTEGER  NOT NULL,
    used_at    INTEGER
);

CREATE INDEX oncall_link_codes_account ON oncall_link_codes (account_id, created_at);
