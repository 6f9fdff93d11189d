//! The settings of alert delivery under `[alerts]` (issue 21, items 3 and 4): how often the
//! dispatcher looks for due deliveries, retries and their backoff, how long an alert may stay
//! unacknowledged per severity before it goes to the next person on the rota, the
//! acknowledgement link's lifetime, `[alerts.smtp]` and the webhooks' secrets. The dispatcher
//! itself is `crate::oncall`.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::Severity;

/// `[alerts.smtp]`: the mail server alerts are sent through. No `host`: no e-mail channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpSettings {
    pub host: Option<String>,
    pub port: u16,
    /// The sender, e.g. `Tsunagu <alerts@example.org>`.
    pub from: String,
    pub username: Option<String>,
    /// From the environment (`TSUNAGU__ALERTS__SMTP__PASSWORD`), never the file.
    #[serde(skip_serializing)]
    pub password: Option<SecretString>,
    pub starttls: StartTls,
    /// A PEM file of the CA that signed the server's certificate, for a server with a private
    /// CA (otherwise the public roots are used).
    pub ca_file: Option<std::path::PathBuf>,
    /// How long one SMTP conversation may take.
    pub timeout_ms: u64,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            host: None,
            port: 587,
            from: "Tsunagu <tsunagu@localhost>".into(),
            username: None,
            password: None,
            starttls: StartTls::Required,
            ca_file: None,
            timeout_ms: 10_000,
        }
    }
}

/// Whether the SMTP connection is upgraded with STARTTLS: always (refuse a server that does not
/// offer it), when offered, or never (a relay on loopback, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartTls {
    Required,
    Opportunistic,
    None,
}

/// `[alerts.ack_timeout_ms]`: how long an alert of each severity may stay unacknowledged
/// before it goes to the next person on the rota (then to everyone on it). `0`: never.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default)]
pub struct AckTimeouts {
    pub critical: u64,
    pub warning: u64,
    pub info: u64,
}

impl Default for AckTimeouts {
    fn default() -> Self {
        AckTimeouts {
            critical: 5 * 60_000,
            warning: 15 * 60_000,
            info: 0,
        }
    }
}

impl AckTimeouts {
    pub fn of(&self, s: Severity) -> u64 {
        match s {
            Severity::Critical => self.critical,
            Severity::Warning => self.warning,
            Severity::Info => self.info,
        }
    }
}

/// The delivery part of `[alerts]`, flattened into [`super::AlertSettings`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliverySettings {
    /// Alerts below this severity are shown in the coordinator view but page nobody.
    pub page_min_severity: Severity,
    /// How often every node looks for due deliveries and escalation steps.
    pub dispatch_ms: u64,
    /// Attempts per delivery before it is given up (audited as failed).
    pub delivery_attempts: u32,
    /// The wait after the first failed attempt, doubled per attempt up to the maximum.
    pub delivery_backoff_ms: u64,
    pub delivery_max_backoff_ms: u64,
    pub ack_timeout_ms: AckTimeouts,
    /// How long an acknowledgement link (e-mail, LINE, the phone call's key press) works.
    pub ack_link_ttl_ms: u64,
    /// How long a one-time code for linking a coordinator's LINE account works.
    pub line_code_ttl_ms: u64,
    /// The number alert calls come from (E.164, one of the organisation's numbers at the
    /// telephony provider). Unset: `voice.caller_id`. Neither: no phone channel.
    pub call_from: Option<String>,
    pub smtp: SmtpSettings,
    /// Webhook secrets by name; a person's webhook names one (`webhook_secret_ref`), so no
    /// secret is kept in the database. Set them from the environment
    /// (`TSUNAGU__ALERTS__WEBHOOK_SECRETS__<NAME>`).
    #[serde(skip_serializing)]
    pub webhook_secrets: BTreeMap<String, SecretString>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            page_min_severity: Severity::Warning,
            dispatch_ms: 1_000,
            delivery_attempts: 5,
            delivery_backoff_ms: 2_000,
            delivery_max_backoff_ms: 60_000,
            ack_timeout_ms: AckTimeouts::default(),
            ack_link_ttl_ms: 24 * 60 * 60_000,
            line_code_ttl_ms: 10 * 60_000,
            call_from: None,
            smtp: SmtpSettings::default(),
            webhook_secrets: BTreeMap::new(),
        }
    }
}

impl DeliverySettings {
    /// The wait before the next attempt after `attempts` failed ones.
    pub fn backoff(&self, attempts: u32) -> u64 {
        crate::clock::doubling_backoff(
            self.delivery_backoff_ms,
            self.delivery_max_backoff_ms,
            attempts,
        )
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn delivery_settings_are_read_from_the_alerts_section() {
        let s = crate::config::Settings::from_toml(
            r#"
            [alerts]
            check_ms = 500
            dispatch_ms = 250
            page_min_severity = "critical"
            [alerts.ack_timeout_ms]
            critical = 60000
            [alerts.smtp]
            host = "smtp.example.org"
            port = 2525
            starttls = "opportunistic"
            [alerts.webhook_secrets]
            team = "s3cret"
            "#,
        );
        let d = &s.alerts.delivery;
        assert_eq!(s.alerts.check_ms, 500);
        assert_eq!(d.dispatch_ms, 250);
        assert_eq!(d.page_min_severity, Severity::Critical);
        assert_eq!(d.ack_timeout_ms.critical, 60_000);
        assert_eq!(
            d.ack_timeout_ms.warning,
            15 * 60_000,
            "the rest keep defaults"
        );
        assert_eq!(d.smtp.host.as_deref(), Some("smtp.example.org"));
        assert_eq!(d.smtp.port, 2525);
        assert_eq!(d.smtp.starttls, StartTls::Opportunistic);
        assert_eq!(d.webhook_secrets["team"].expose_secret(), "s3cret");
    }

    #[test]
    fn the_backoff_doubles_up_to_its_maximum() {
        let d = DeliverySettings::default();
        assert_eq!(d.backoff(1), 2_000);
        assert_eq!(d.backoff(2), 4_000);
        assert_eq!(d.backoff(10), 60_000);
    }
}
