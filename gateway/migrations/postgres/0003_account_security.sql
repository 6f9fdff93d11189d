-- Accounts administered from the admin screen, second factors and the confidentiality pledge
-- (issue 20, items 3 and 4). Times are Unix milliseconds; a flag is the time it was set.
--
-- `one_time_password_at`: the password was set by an admin (a one-time password shown once)
-- and must be changed at the next sign-in. `totp_secret`: the RFC 6238 shared secret (base32),
-- never logged nor shown again after enrolment; `totp_last_step`: the time step of the last
-- code accepted, so a code is never accepted twice. `pledge_hash`: SHA-256 (hex) of the pledge
-- text the account acknowledged, at `pledge_at`.
ALTER TABLE accounts ADD COLUMN one_time_password_at BIGINT;
ALTER TABLE accounts ADD COLUMN totp_secret TEXT;
ALTER TABLE accounts ADD COLUMN totp_enabled_at BIGINT;
ALTER TABLE accounts ADD COLUMN totp_last_step BIGINT;
ALTER TABLE accounts ADD COLUMN pledge_hash TEXT;
ALTER TABLE accounts ADD COLUMN pledge_at BIGINT;

-- Recovery codes, stored only as SHA-256 (hex) of the account id and the code; each works once.
CREATE TABLE account_recovery_codes (
    account_id TEXT   NOT NULL,
    code_hash  TEXT   NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (account_id, code_hash)
);

-- A sign-in between its password and its session: the steps still to do (second factor,
-- password change, enrolment, pledge). The token is stored only as its SHA-256.
CREATE TABLE sign_in_challenges (
    token_hash       TEXT   PRIMARY KEY,
    account_id       TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    second_factor_at BIGINT,
    enrol_secret     TEXT
);

CREATE INDEX sign_in_challenges_expires ON sign_in_challenges (expires_at);

-- Append-only: who changed which account how, when. Never a password, code or secret.
CREATE TABLE account_audit (
    seq       BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor_id  TEXT,
    action    TEXT   NOT NULL,
    target_id TEXT,
    detail    TEXT
);

CREATE FUNCTION account_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the account audit trail is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER account_audit_no_change BEFORE UPDATE OR DELETE ON account_audit
    FOR EACH ROW EXECUTE FUNCTION account_audit_append_only();
