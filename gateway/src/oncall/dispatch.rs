//! The dispatcher every node runs: every `alerts.dispatch_ms` (and at once when this node
//! raised an alert) it takes the escalation steps that are due, then sends the deliveries that
//! are due. Each is claimed in the database first (a conditional UPDATE), so with several nodes
//! one of them takes each step and sends each message; a node that dies mid-send leaves the
//! delivery to the others when its claim lapses.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use ulid::Ulid;

use super::channel::{self, Channel, Outcome, WebhookFormat};
use super::message::Message;
use super::{severity_of, Oncall};
use crate::clock::Millis;
use crate::db::{AlertAuditRow, DeliveryRow};

/// How long a node's claim on a delivery holds: longer than one attempt may take.
const CLAIM_MS: u64 = 60_000;
/// At most this many deliveries or escalation steps per pass.
const BATCH: u32 = 64;

pub(super) async fn run(oncall: Arc<Oncall>, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(oncall.cfg.dispatch_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            _ = oncall.wake.notified() => {}
        }
        oncall.escalate_due().await;
        oncall.send_due().await;
    }
}

impl Oncall {
    /// Takes the escalation steps due now: the first to the next person on the rota, the
    /// second to everyone on it (then no further step).
    pub async fn escalate_due(&self) -> usize {
        let now = self.clock.now_ms();
        let due = match self.db.due_escalations(now, BATCH).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "could not read due alert escalations");
                return 0;
            }
        };
        let mut stepped = 0;
        for a in due {
            let rota = match self.on_call(now).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the rota");
                    return stepped;
                }
            };
            let level = usize::try_from(a.level + 1).unwrap_or(usize::MAX);
            let timeout = self.cfg.ack_timeout_ms.of(severity_of(&a));
            // The first step goes to the next person, the second to everyone.
            let (people, next, detail): (Vec<Ulid>, Option<Millis>, String) =
                if level == 1 && rota.len() > 1 {
                    (
                        vec![rota[level]],
                        Some(now + timeout),
                        format!("level {level}"),
                    )
                } else {
                    (rota.clone(), None, format!("everyone ({})", rota.len()))
                };
            let mut audit = vec![AlertAuditRow {
                detail: Some(detail),
                ..AlertAuditRow::system(now, "alert_escalated", Some(a.id))
            }];
            let deliveries = match self.deliveries_for(a.id, &people, now, &mut audit).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(alert = %a.id, error = %e, "could not plan an escalation");
                    continue;
                }
            };
            match self
                .db
                .escalate_alert(a.id, a.level, now, next, &deliveries, &audit)
                .await
            {
                Ok(true) => {
                    stepped += 1;
                    tracing::warn!(alert = %a.id, level, "alert unacknowledged: escalated");
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(alert = %a.id, error = %e, "could not escalate an alert"),
            }
        }
        stepped
    }

    /// Sends the deliveries due now that this node can claim. Returns how many were sent.
    pub async fn send_due(&self) -> usize {
        let now = self.clock.now_ms();
        let due = match self.db.due_alert_deliveries(now, BATCH).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "could not read due alert deliveries");
                return 0;
            }
        };
        let mut sent = 0;
        for d in due {
            match self.db.claim_alert_delivery(d.id, now, CLAIM_MS).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(delivery = %d.id, error = %e, "could not claim an alert delivery");
                    continue;
                }
            }
            let attempt = d.attempts + 1;
            let outcome = self.attempt(&d).await;
            let done_at = self.clock.now_ms();
            let (ok, retry_at, detail) = match &outcome {
                Outcome::Sent => (true, None, "sent".to_owned()),
                Outcome::Retry(why) if attempt < self.cfg.delivery_attempts => (
                    false,
                    Some(done_at + self.cfg.backoff(attempt)),
                    format!("attempt {attempt}: {why}; will retry"),
                ),
                Outcome::Retry(why) | Outcome::GiveUp(why) => {
                    (false, None, format!("attempt {attempt}: {why}; given up"))
                }
            };
            let audit = AlertAuditRow {
                actor_id: Some(d.account_id),
                channel: Some(d.channel.clone()),
                detail: Some(detail),
                ..AlertAuditRow::system(done_at, "delivery_attempt", Some(d.alert_id))
            };
            if let Err(e) = self
                .db
                .finish_alert_delivery(d.id, done_at, ok, retry_at, &audit)
                .await
            {
                tracing::warn!(delivery = %d.id, error = %e, "could not record an alert delivery attempt");
            }
            if ok {
                sent += 1;
                tracing::info!(alert = %d.alert_id, channel = d.channel.as_str(), attempt, "alert delivered");
            } else {
                // The reason is a class (`smtp 550`, `status 500`), never an address.
                let reason = match &outcome {
                    Outcome::Retry(why) | Outcome::GiveUp(why) => why.as_str(),
                    Outcome::Sent => "",
                };
                tracing::warn!(alert = %d.alert_id, channel = d.channel.as_str(), attempt, reason, "alert delivery failed");
            }
        }
        sent
    }

    /// One attempt at one delivery.
    async fn attempt(&self, d: &DeliveryRow) -> Outcome {
        let alert = match self.db.alert(d.alert_id).await {
            Ok(Some(a)) => a,
            Ok(None) => return Outcome::GiveUp("alert gone".into()),
            Err(_) => return Outcome::Retry("database".into()),
        };
        let channels = match self.db.oncall_channels_of(d.account_id).await {
            Ok(c) => c.unwrap_or_default(),
            Err(_) => return Outcome::Retry("database".into()),
        };
        let mut msg = Message {
            alert: &alert,
            now: self.clock.now_ms(),
            console_url: format!("{}/coordinator", self.base_url()),
            ack_url: None,
            ack_hours: self.cfg.ack_link_ttl_ms.div_ceil(3_600_000),
        };
        match Channel::parse(&d.channel) {
            Some(Channel::Email) => {
                let Some(to) = channels.email.as_deref().filter(|e| !e.is_empty()) else {
                    return Outcome::GiveUp("no address".into());
                };
                match self
                    .ack_link(d.alert_id, d.account_id, Channel::Email)
                    .await
                {
                    Ok(url) => msg.ack_url = Some(url),
                    Err(_) => return Outcome::Retry("database".into()),
                }
                channel::send_email(self.smtp.as_ref(), &self.cfg.smtp.from, to, &msg).await
            }
            Some(Channel::Webhook) => {
                let Some(url) = channels.webhook_url.as_deref().filter(|u| !u.is_empty()) else {
                    return Outcome::GiveUp("no webhook".into());
                };
                let format = channels
                    .webhook_format
                    .as_deref()
                    .and_then(WebhookFormat::parse)
                    .unwrap_or(WebhookFormat::Generic);
                let secret = match channels.webhook_secret_ref.as_deref() {
                    None | Some("") => None,
                    Some(name) => match self.cfg.webhook_secrets.get(name) {
                        Some(s) => Some(s.expose_secret().as_bytes().to_vec()),
                        None => return Outcome::GiveUp("secret not configured".into()),
                    },
                };
                channel::send_webhook(
                    &self.http,
                    url,
                    format,
                    secret.as_deref(),
                    &msg,
                    &d.id.to_string(),
                )
                .await
            }
            Some(Channel::Line) => self.send_line(d, msg).await,
            Some(Channel::Phone) => match channels.phone.as_deref().filter(|p| !p.is_empty()) {
                Some(to) => self.call(d, to).await,
                None => Outcome::GiveUp("no number".into()),
            },
            None => Outcome::GiveUp("unknown channel".into()),
        }
    }

    /// A LINE push to the person's linked account, with an acknowledgement link.
    async fn send_line(&self, d: &DeliveryRow, mut msg: Message<'_>) -> Outcome {
        let Some(pager) = self.line.get() else {
            return Outcome::GiveUp("line not configured".into());
        };
        let link = match self.db.line_link(d.account_id).await {
            Ok(Some(l)) => l,
            Ok(None) => return Outcome::GiveUp("line not linked".into()),
            Err(_) => return Outcome::Retry("database".into()),
        };
        match self.ack_link(d.alert_id, d.account_id, Channel::Line).await {
            Ok(url) => msg.ack_url = Some(url),
            Err(_) => return Outcome::Retry("database".into()),
        }
        pager.push(&link, msg.text(), &d.id.to_string()).await
    }

    /// A phone call to `to`: the provider fetches the spoken alert from a single-use URL, and
    /// the key 1 acknowledges it.
    async fn call(&self, d: &DeliveryRow, to: &str) -> Outcome {
        let Some(pager) = self.phone.get() else {
            return Outcome::GiveUp("phone not configured".into());
        };
        let token = match self
            .ack_token(d.alert_id, d.account_id, Channel::Phone)
            .await
        {
            Ok(t) => t,
            Err(_) => return Outcome::Retry("database".into()),
        };
        let url = format!("{}/api/alerts/call/{token}", self.phone_base());
        pager.call(to, self.cfg.call_from.as_deref(), &url).await
    }
}
