//! The channels an alert goes out by, one delivery function per kind: e-mail over SMTP
//! (`lettre`, STARTTLS required, opportunistic or off) and a signed webhook (HMAC-SHA256 over
//! `"<timestamp>.<body>"`, the escalation webhook's signing, in Slack, Teams or generic JSON).
//! A LINE push and a phone call go through the connectors, which register themselves as
//! [`LinePager`] and [`PhonePager`] (this module does not depend on them); browser
//! notifications are the console's own.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;

use futures_util::future::BoxFuture;

use super::message::Message;
use crate::alerting::{SmtpSettings, StartTls};
use crate::db::LineLinkRow;
use crate::escalation::webhook_signature;

/// A kind of channel. Stored by name in `alert_deliveries.channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Webhook,
    Line,
    Phone,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
            Channel::Line => "line",
            Channel::Phone => "phone",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "email" => Some(Channel::Email),
            "webhook" => Some(Channel::Webhook),
            "line" => Some(Channel::Line),
            "phone" => Some(Channel::Phone),
            _ => None,
        }
    }
}

/// A webhook's payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    Slack,
    Teams,
    Generic,
}

impl WebhookFormat {
    pub fn parse(s: &str) -> Option<WebhookFormat> {
        match s {
            "slack" => Some(WebhookFormat::Slack),
            "teams" => Some(WebhookFormat::Teams),
            "generic" => Some(WebhookFormat::Generic),
            _ => None,
        }
    }
}

/// How one attempt went: sent, failed and worth retrying, or failed for good (a setting is
/// wrong: retrying would not help). The detail goes to the audit trail: a status or an error's
/// class, never an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Retry(String),
    GiveUp(String),
}

/// The LINE connector as alert delivery sees it: a push to a coordinator's linked account.
pub trait LinePager: Send + Sync {
    /// Pushes `text` to the LINE user sealed in `link`; `key` is the same on every attempt of
    /// one delivery, so LINE accepts it once.
    fn push<'a>(
        &'a self,
        link: &'a LineLinkRow,
        text: String,
        key: &'a str,
    ) -> BoxFuture<'a, Outcome>;
}

/// The phone connector as alert delivery sees it: an outbound call whose TwiML the provider
/// fetches from `twiml_url`.
pub trait PhonePager: Send + Sync {
    /// Where the provider reaches the gateway, if configured apart from its own address
    /// (`voice.public_url`): the TwiML and key-press URLs start with it, and their signatures
    /// are checked over it.
    fn public_base(&self) -> Option<String>;
    /// Calls `to` from `from` (else the connector's caller id).
    fn call<'a>(
        &'a self,
        to: &'a str,
        from: Option<&'a str>,
        twiml_url: &'a str,
    ) -> BoxFuture<'a, Outcome>;
}

/// The class of an SMTP error, for the audit trail and the logs: a status code or a kind,
/// never the error's text (a server's answer may repeat the recipient's address).
fn smtp_error_class(e: &lettre::transport::smtp::Error) -> String {
    match e.status() {
        Some(code) => format!("smtp {code}"),
        None if e.is_permanent() => "smtp refused".into(),
        None if e.is_transient() => "smtp transient".into(),
        None if e.is_timeout() => "smtp timeout".into(),
        None if e.is_tls() => "smtp tls".into(),
        None => "smtp connection".into(),
    }
}

/// The SMTP transport built from `[alerts.smtp]`; `None` without a host.
pub fn smtp_transport(
    cfg: &SmtpSettings,
) -> anyhow::Result<Option<AsyncSmtpTransport<Tokio1Executor>>> {
    let Some(host) = &cfg.host else {
        return Ok(None);
    };
    let params = || -> anyhow::Result<TlsParameters> {
        let mut b = TlsParameters::builder(host.clone());
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca)?;
            b = b.add_root_certificate(lettre::transport::smtp::client::Certificate::from_pem(
                &pem,
            )?);
        }
        Ok(b.build_rustls()?)
    };
    let tls = match cfg.starttls {
        StartTls::Required => Tls::Required(params()?),
        StartTls::Opportunistic => Tls::Opportunistic(params()?),
        StartTls::None => Tls::None,
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
        .port(cfg.port)
        .tls(tls)
        .timeout(Some(Duration::from_millis(cfg.timeout_ms.max(1))));
    if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
        b = b.credentials(Credentials::new(
            user.clone(),
            pass.expose_secret().to_owned(),
        ));
    }
    Ok(Some(b.build()))
}

/// Sends the alert by e-mail to `to`.
pub async fn send_email(
    smtp: Option<&AsyncSmtpTransport<Tokio1Executor>>,
    from: &str,
    to: &str,
    msg: &Message<'_>,
) -> Outcome {
    let Some(smtp) = smtp else {
        return Outcome::GiveUp("smtp not configured".into());
    };
    let (Ok(from), Ok(to)) = (from.parse(), to.parse()) else {
        return Outcome::GiveUp("bad address".into());
    };
    let email = match lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(msg.subject())
        .header(ContentType::TEXT_PLAIN)
        .body(msg.text())
    {
        Ok(e) => e,
        Err(_) => return Outcome::GiveUp("message not built".into()),
    };
    match smtp.send(email).await {
        Ok(_) => Outcome::Sent,
        Err(e) if e.is_permanent() => Outcome::GiveUp(smtp_error_class(&e)),
        Err(e) => Outcome::Retry(smtp_error_class(&e)),
    }
}

/// Posts the alert to a webhook in `format`, signed with `secret` when there is one
/// (`X-Tsunagu-Timestamp`, `X-Tsunagu-Signature: v1=<hex>`, as the escalation webhook).
pub async fn send_webhook(
    http: &reqwest::Client,
    url: &str,
    format: WebhookFormat,
    secret: Option<&[u8]>,
    msg: &Message<'_>,
    delivery: &str,
) -> Outcome {
    let payload = match format {
        WebhookFormat::Slack => msg.slack(),
        WebhookFormat::Teams => msg.teams(),
        WebhookFormat::Generic => msg.generic(),
    };
    let Ok(body) = serde_json::to_vec(&payload) else {
        return Outcome::GiveUp("payload".into());
    };
    let ts = msg.now / 1000;
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-tsunagu-alert", msg.alert.id.to_string())
        .header("x-tsunagu-delivery", delivery);
    if let Some(secret) = secret {
        req = req.header("x-tsunagu-timestamp", ts.to_string()).header(
            "x-tsunagu-signature",
            format!("v1={}", webhook_signature(secret, ts, &body)),
        );
    }
    match req.body(body).send().await {
        Ok(r) if r.status().is_success() => Outcome::Sent,
        Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
            Outcome::GiveUp(format!("status {}", r.status().as_u16()))
        }
        Ok(r) => Outcome::Retry(format!("status {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => Outcome::Retry("timeout".into()),
        Err(_) => Outcome::Retry("connection".into()),
    }
}
