-- The referral directory, canned phrases, runtime settings and the admin audit trail
-- (issue 20). Times are Unix milliseconds. None of this is about a person who reaches out: it
-- is the organisation's own data, edited by admins.
--
-- `hours`: when an entry answers, in Japan time, in the compact form `gateway::directory::hours`
-- parses (`24h`, `mon-fri 09:00-17:00; sat 10:00-12:00`, a range past midnight wraps);
-- empty when unknown. `hours_note`: free text shown beside it. `topics`, `languages`:
-- comma-separated words (an empty `languages` serves every language). `region`: empty for a
-- national line. A flag that records an act is the time of it (`hidden_at`, `verified_at`:
-- NULL until the organisation has checked the entry); `for_closing` is 1 when the entry is
-- listed in closing messages.
CREATE TABLE referral_entries (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    phone       TEXT    NOT NULL DEFAULT '',
    url         TEXT    NOT NULL DEFAULT '',
    helps_with  TEXT    NOT NULL DEFAULT '',
    hours       TEXT    NOT NULL DEFAULT '',
    hours_note  TEXT    NOT NULL DEFAULT '',
    region      TEXT    NOT NULL DEFAULT '',
    topics      TEXT    NOT NULL DEFAULT '',
    languages   TEXT    NOT NULL DEFAULT '',
    notes       TEXT    NOT NULL DEFAULT '',
    for_closing BIGINT  NOT NULL DEFAULT 0 CHECK (for_closing IN (0, 1)),
    sort_order  BIGINT  NOT NULL DEFAULT 0,
    hidden_at   BIGINT,
    verified_at BIGINT,
    updated_at  BIGINT  NOT NULL
);

CREATE TABLE phrases (
    id          TEXT    PRIMARY KEY,
    lang        TEXT    NOT NULL,
    category    TEXT    NOT NULL DEFAULT '',
    title       TEXT    NOT NULL,
    text        TEXT    NOT NULL,
    sort_order  BIGINT  NOT NULL DEFAULT 0,
    hidden_at   BIGINT,
    updated_at  BIGINT  NOT NULL
);

-- Runtime settings an admin may change; a value here overrides the configuration file's.
-- Every write bumps `version`: nodes poll the sum of versions to see a change within seconds.
-- The row `directory.revision` is bumped by every change of the directory or the phrases.
CREATE TABLE settings (
    key        TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    version    BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    updated_by TEXT
);

-- Append-only: which admin changed what (subject `directory`, `phrase`, `setting`; others may
-- add subjects), when. `detail` names the change (a setting's new value, how many rows an
-- import wrote), never anything of a conversation.
CREATE TABLE admin_audit (
    seq        BIGSERIAL PRIMARY KEY,
    at         BIGINT  NOT NULL,
    actor_id   TEXT    NOT NULL,
    actor_name TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target_id  TEXT,
    detail     TEXT
);

CREATE FUNCTION admin_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the admin audit trail is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER admin_audit_no_change BEFORE UPDATE OR DELETE ON admin_audit
    FOR EACH ROW EXECUTE FUNCTION admin_audit_append_only();
