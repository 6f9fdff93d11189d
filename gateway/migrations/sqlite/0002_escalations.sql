-- Escalation records and their audit trail (issue 20). Times are Unix milliseconds.
--
-- `sealed` is the record exactly as the directory store kept it: magic `TSG1`, a 24-byte
-- nonce, the XChaCha20-Poly1305 ciphertext of the JSON record with the record id as associated
-- data. The key is never in the database. The other columns hold no content: what the
-- retention sweep and webhook delivery need without decrypting.
CREATE TABLE escalation_records (
    id                TEXT    PRIMARY KEY NOT NULL,
    sealed            BLOB    NOT NULL,
    -- Bumped by every rewrite: a change based on an older version is refused and retried.
    version           INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    -- The conversation closed: the record is complete and may be delivered.
    closed_at         INTEGER,
    -- Delivery to the case system: acknowledged at, attempts so far, when the next is due, and
    -- until when one node's claim on the delivery holds.
    delivered_at      INTEGER,
    delivery_attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER,
    claimed_until     INTEGER
);

CREATE INDEX escalation_records_expires ON escalation_records (expires_at);

-- Append-only: who listed, viewed, delivered or let expire which record, when. No content.
CREATE TABLE escalation_audit (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor_id   TEXT,
    actor_name TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    record_id  TEXT
);

CREATE TRIGGER escalation_audit_no_update BEFORE UPDATE ON escalation_audit
BEGIN
    SELECT RAISE(ABORT, 'the escalation audit trail is append-only');
END;

CREATE TRIGGER escalation_audit_no_delete BEFORE DELETE ON escalation_audit
BEGIN
    SELECT RAISE(ABORT, 'the escalation audit trail is append-only');
END;
