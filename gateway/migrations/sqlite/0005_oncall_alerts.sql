-- The on-call rota, alerts and their delivery (issue 21). Times are Unix milliseconds; the
-- weekly schedule is in Japan time (UTC+9, no daylight saving). Nothing of a conversation: an
-- alert carries its kind, severity, category, counts and times.

-- Weekly ranges: who is on call on which weekday (0 = Monday … 6 = Sunday) from which minute
-- of the day until which (exclusive, 1440 = midnight); `position` orders the rota (lowest is
-- called first).
CREATE TABLE oncall_schedule (
    id           TEXT    PRIMARY KEY NOT NULL,
    account_id   TEXT    NOT NULL,
    weekday      INTEGER NOT NULL,
    start_minute INTEGER NOT NULL,
    end_minute   INTEGER NOT NULL,
    position     INTEGER NOT NULL
);

-- Overrides: someone on call from `starts_at` until `ends_at`, ahead of the weekly schedule.
CREATE TABLE oncall_overrides (
    id         TEXT    PRIMARY KEY NOT NULL,
    account_id TEXT    NOT NULL,
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX oncall_overrides_ends ON oncall_overrides (ends_at);

-- Each person's channels, each optional. The webhook's secret is not here: `webhook_secret_ref`
-- names an entry of `[alerts.webhook_secrets]` in the configuration.
CREATE TABLE oncall_channels (
    account_id         TEXT    PRIMARY KEY NOT NULL,
    email              TEXT,
    webhook_url        TEXT,
    webhook_format     TEXT,
    webhook_secret_ref TEXT,
    updated_at         INTEGER NOT NULL
);

-- One alert: what, how urgent, since when; who acknowledged it by which channel; how far it
-- has escalated (`level` is the place on the rota last paged; past the end, everyone) and when
-- the next step is due.
CREATE TABLE alerts (
    id                   TEXT    PRIMARY KEY NOT NULL,
    kind                 TEXT    NOT NULL,
    severity             TEXT    NOT NULL,
    category             TEXT,
    value                INTEGER NOT NULL,
    waiting              INTEGER NOT NULL,
    started_at           INTEGER NOT NULL,
    acknowledged_at      INTEGER,
    acknowledged_by      TEXT,
    acknowledged_name    TEXT,
    acknowledged_channel TEXT,
    level                INTEGER NOT NULL DEFAULT 0,
    next_escalation_at   INTEGER
);

CREATE INDEX alerts_next_escalation ON alerts (next_escalation_at);

-- One message to one person by one channel, with its delivery state: any node claims a due
-- delivery (a conditional UPDATE of `claimed_until`) before sending it.
CREATE TABLE alert_deliveries (
    id            TEXT    PRIMARY KEY NOT NULL,
    alert_id      TEXT    NOT NULL,
    account_id    TEXT    NOT NULL,
    channel       TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER NOT NULL,
    claimed_until INTEGER,
    sent_at       INTEGER,
    UNIQUE (alert_id, account_id, channel)
);

CREATE INDEX alert_deliveries_due ON alert_deliveries (status, next_at);

-- Single-use acknowledgement links: only the SHA-256 of the token is kept.
CREATE TABLE alert_ack_tokens (
    token_hash TEXT    PRIMARY KEY NOT NULL,
    alert_id   TEXT    NOT NULL,
    account_id TEXT    NOT NULL,
    channel    TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);

-- Append-only: every alert, delivery attempt, acknowledgement and rota change; who, when,
-- which channel, the result. Never content.
CREATE TABLE alert_audit (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor_id   TEXT,
    actor_name TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    alert_id   TEXT,
    channel    TEXT,
    detail     TEXT
);

CREATE TRIGGER alert_audit_no_update BEFORE UPDATE ON alert_audit
BEGIN
    SELECT RAISE(ABORT, 'the alert audit trail is append-only');
END;

CREATE TRIGGER alert_audit_no_delete BEFORE DELETE ON alert_audit
BEGIN
    SELECT RAISE(ABORT, 'the alert audit trail is append-only');
END;
