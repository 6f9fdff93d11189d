//! The on-call rota and alert delivery (issue 21, items 1, 3 and 4).
//!
//! [`Oncall`] owns: who is on call now (`rota.rs`, from the weekly schedule and overrides in
//! the organisation's database); raising an alert (a row in `alerts`, a delivery per channel
//! of the first person on the rota, audited); the dispatcher that every node runs
//! (`dispatch.rs`: it claims due deliveries with a conditional UPDATE, so one node sends each,
//! retries with backoff, and takes escalation steps: unacknowledged after the severity's
//! timeout an alert goes to the second person on the rota, then to everyone on it); and
//! acknowledgement (from the console or a single-use, expiring link in an e-mail), the first of
//! which sticks and cancels what is still pending. The channels are `channel.rs`; what an alert
//! says is `message.rs`: kind, severity, category, age, counts and links, never content.
//!
//! All of its state is in the database, so any node can retry or escalate after another stops.

mod channel;
mod dispatch;
pub mod link;
mod message;
pub mod rota;

use std::sync::{Arc, OnceLock, RwLock};

use rand::RngCore;
use ulid::Ulid;

pub use channel::{Channel, LinePager, Outcome, PhonePager, WebhookFormat};
pub use message::Message;

use crate::alerting::{AlertKind, AlertSettings, DeliverySettings, Severity};
use crate::clock::{Clock, Millis};
use crate::db::{AlertAuditRow, AlertRow, ChannelsRow, Db, DbError, DeliveryRow};

/// An alert as the engine raises it: what, the category, the count, and how many wait. Not
/// which conversation: nothing of a conversation is kept in the database (the coordinator view
/// finds it by the alert's id, the same as its help or emergency alert's).
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub id: Ulid,
    pub kind: AlertKind,
    pub category: Option<String>,
    pub value: u64,
    pub waiting: u32,
}

/// What acknowledging found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    /// This acknowledgement was the first.
    Now,
    /// Someone acknowledged it before.
    Already,
    /// There is no such alert.
    Unknown,
}

/// Someone on the rota now, as the coordinator view shows them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OnCallPerson {
    pub account: Ulid,
    pub name: String,
}

pub struct Oncall {
    db: Db,
    clock: Clock,
    cfg: DeliverySettings,
    smtp: Option<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
    http: reqwest::Client,
    /// Where people open the gateway (links in messages); set once the port is bound.
    base_url: RwLock<String>,
    /// Woken when this node raised an alert, so its deliveries go at once.
    wake: tokio::sync::Notify,
    /// The LINE and phone connectors, registered at start when they are configured.
    line: OnceLock<Arc<dyn LinePager>>,
    phone: OnceLock<Arc<dyn PhonePager>>,
}

impl Oncall {
    /// Opens alert delivery on the organisation's database (`[alerts]`).
    pub fn open(cfg: &AlertSettings, db: Db, clock: Clock) -> anyhow::Result<Oncall> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Oncall {
            smtp: channel::smtp_transport(&cfg.delivery.smtp)?,
            cfg: cfg.delivery.clone(),
            db,
            clock,
            http,
            base_url: RwLock::new(String::new()),
            wake: tokio::sync::Notify::new(),
            line: OnceLock::new(),
            phone: OnceLock::new(),
        })
    }

    /// Alerts can go by LINE through this connector.
    pub fn set_line(&self, pager: Arc<dyn LinePager>) {
        let _ = self.line.set(pager);
    }

    /// Alerts can go by phone through this connector.
    pub fn set_phone(&self, pager: Arc<dyn PhonePager>) {
        let _ = self.phone.set(pager);
    }

    /// Where the telephony provider reaches the gateway: its own setting, else the base URL.
    pub fn phone_base(&self) -> String {
        match self.phone.get().and_then(|p| p.public_base()) {
            Some(b) => b.trim_end_matches('/').to_owned(),
            None => self.base_url(),
        }
    }

    /// Sets the address links in messages start with (`https://helpline.example`).
    pub fn set_base_url(&self, url: &str) {
        *self.base_url.write().unwrap_or_else(|e| e.into_inner()) =
            url.trim_end_matches('/').to_owned();
    }

    fn base_url(&self) -> String {
        self.base_url
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn settings(&self) -> &DeliverySettings {
        &self.cfg
    }

    /// The accounts on call at `now`, in paging order (disabled accounts left out).
    pub async fn on_call(&self, now: Millis) -> Result<Vec<Ulid>, DbError> {
        let schedule = self.db.oncall_schedule().await?;
        let overrides = self.db.oncall_overrides(now).await?;
        let disabled: Vec<Ulid> = self
            .db
            .accounts()
            .await?
            .into_iter()
            .filter(|a| a.disabled_at.is_some())
            .map(|a| a.id)
            .collect();
        Ok(rota::on_call(&schedule, &overrides, now)
            .into_iter()
            .filter(|a| !disabled.contains(a))
            .collect())
    }

    /// [`Self::on_call`] with names, for the coordinator view.
    pub async fn on_call_now(&self) -> Result<Vec<OnCallPerson>, DbError> {
        let ids = self.on_call(self.clock.now_ms()).await?;
        let accounts = self.db.accounts().await?;
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                accounts.iter().find(|a| a.id == id).map(|a| OnCallPerson {
                    account: id,
                    name: a.display_name.clone(),
                })
            })
            .collect())
    }

    /// The deliveries of `alert` to `people`: one per channel each has set up.
    async fn deliveries_for(
        &self,
        alert: Ulid,
        people: &[Ulid],
        now: Millis,
        audit: &mut Vec<AlertAuditRow>,
    ) -> Result<Vec<DeliveryRow>, DbError> {
        let mut out = Vec::new();
        for &person in people {
            let channels = self.db.oncall_channels_of(person).await?;
            let linked = self.db.line_link(person).await?.is_some();
            let mut any = false;
            for ch in channels_of(channels.as_ref(), linked) {
                any = true;
                out.push(DeliveryRow {
                    id: Ulid::new(),
                    alert_id: alert,
                    account_id: person,
                    channel: ch.as_str().into(),
                    status: "pending".into(),
                    attempts: 0,
                    next_at: now,
                    sent_at: None,
                });
            }
            if !any {
                audit.push(AlertAuditRow {
                    actor_id: Some(person),
                    detail: Some("no channel".into()),
                    ..AlertAuditRow::system(now, "delivery_skipped", Some(alert))
                });
            }
        }
        Ok(out)
    }

    /// Raises an alert: recorded and audited, and (at or above `page_min_severity`) sent to
    /// the first person on the rota by each of their channels; it escalates if nobody
    /// acknowledges it in time. Errors are logged: the alert is still shown in the view.
    pub async fn raise(&self, a: NewAlert) {
        if let Err(e) = self.try_raise(&a).await {
            tracing::error!(alert = %a.id, kind = a.kind.as_str(), error = %e, "could not record an alert for delivery");
        }
    }

    async fn try_raise(&self, a: &NewAlert) -> Result<(), DbError> {
        let now = self.clock.now_ms();
        let severity = a.kind.severity();
        let paged = severity >= self.cfg.page_min_severity;
        let rota = if paged {
            self.on_call(now).await?
        } else {
            vec![]
        };
        let timeout = self.cfg.ack_timeout_ms.of(severity);
        let mut audit = vec![AlertAuditRow {
            detail: Some(if paged {
                format!("{} on call", rota.len())
            } else {
                "not paged".into()
            }),
            ..AlertAuditRow::system(now, "alert_raised", Some(a.id))
        }];
        let first: Vec<Ulid> = rota.first().copied().into_iter().collect();
        let deliveries = self.deliveries_for(a.id, &first, now, &mut audit).await?;
        let row = AlertRow {
            id: a.id,
            kind: a.kind.as_str().into(),
            severity: severity.as_str().into(),
            category: a.category.clone(),
            value: i64::try_from(a.value).unwrap_or(i64::MAX),
            waiting: i64::from(a.waiting),
            started_at: now,
            acknowledged_at: None,
            acknowledged_by: None,
            acknowledged_name: None,
            acknowledged_channel: None,
            level: 0,
            next_escalation_at: (paged && timeout > 0 && !rota.is_empty()).then(|| now + timeout),
        };
        self.db.insert_alert(&row, &deliveries, &audit).await?;
        if !deliveries.is_empty() {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Acknowledges an alert by `by` (an account, or `None` for the system) from `channel`
    /// (`console`, `email_link`, …): the first acknowledgement sticks and cancels pending
    /// deliveries and escalation.
    pub async fn acknowledge(
        &self,
        id: Ulid,
        by: Option<Ulid>,
        name: &str,
        channel: &str,
    ) -> Result<Acked, DbError> {
        let now = self.clock.now_ms();
        if self
            .db
            .acknowledge_alert(id, now, by, name, channel)
            .await?
        {
            tracing::info!(alert = %id, channel, "alert acknowledged");
            return Ok(Acked::Now);
        }
        Ok(match self.db.alert(id).await? {
            Some(_) => Acked::Already,
            None => Acked::Unknown,
        })
    }

    /// A new single-use acknowledgement token for `alert` and `account` by `channel` (only
    /// its hash is kept).
    async fn ack_token(
        &self,
        alert: Ulid,
        account: Ulid,
        channel: Channel,
    ) -> Result<String, DbError> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        self.db
            .insert_ack_token(
                &crate::token::hash_token(&token),
                &crate::db::AckTokenRow {
                    alert_id: alert,
                    account_id: account,
                    channel: channel.as_str().into(),
                    expires_at: self.clock.now_ms() + self.cfg.ack_link_ttl_ms,
                    used_at: None,
                },
            )
            .await?;
        Ok(token)
    }

    /// A new acknowledgement link (e-mail, LINE): the token's URL.
    async fn ack_link(
        &self,
        alert: Ulid,
        account: Ulid,
        channel: Channel,
    ) -> Result<String, DbError> {
        let token = self.ack_token(alert, account, channel).await?;
        Ok(format!("{}/api/alerts/ack/{token}", self.base_url()))
    }

    /// What a link would acknowledge, without using it (for the confirmation page): `None`
    /// when the token is unknown, used or expired.
    pub async fn peek_link(&self, token: &str) -> Result<Option<AlertRow>, DbError> {
        let Some(t) = self.db.ack_token(&crate::token::hash_token(token)).await? else {
            return Ok(None);
        };
        if t.used_at.is_some() || t.expires_at <= self.clock.now_ms() {
            return Ok(None);
        }
        self.db.alert(t.alert_id).await
    }

    /// Uses a link: once, before it expires. Gives the alert, the account it was sent to
    /// (the one acknowledging) and the channel it was sent by, or `None`.
    pub async fn use_link(&self, token: &str) -> Result<Option<(Ulid, Ulid, String)>, DbError> {
        let now = self.clock.now_ms();
        Ok(self
            .db
            .use_ack_token(&crate::token::hash_token(token), now)
            .await?
            .map(|t| (t.alert_id, t.account_id, t.channel)))
    }

    /// Appends to the audit trail (rota edits, refusals).
    pub async fn audit(&self, row: AlertAuditRow) -> Result<(), DbError> {
        self.db.append_alert_audit(&[row]).await
    }

    pub fn now_ms(&self) -> Millis {
        self.clock.now_ms()
    }
}

/// The channels a person has set up: those of their row, and LINE when their account is
/// linked (unless they turned it off).
fn channels_of(c: Option<&ChannelsRow>, line_linked: bool) -> Vec<Channel> {
    let mut v = Vec::new();
    let set = |f: Option<&String>| f.is_some_and(|x| !x.is_empty());
    if let Some(c) = c {
        if set(c.email.as_ref()) {
            v.push(Channel::Email);
        }
        if set(c.webhook_url.as_ref()) {
            v.push(Channel::Webhook);
        }
        if set(c.phone.as_ref()) {
            v.push(Channel::Phone);
        }
    }
    if line_linked && c.is_none_or(|c| c.line_enabled) {
        v.push(Channel::Line);
    }
    v
}

/// The severity of a stored alert (`warning` if unreadable).
fn severity_of(row: &AlertRow) -> Severity {
    Severity::parse(&row.severity).unwrap_or(Severity::Warning)
}

/// Runs the dispatcher on this node until `shutdown`.
pub fn spawn(
    oncall: Arc<Oncall>,
    shutdown: tokio_util::sync::CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) {
    tracker.spawn(async move { dispatch::run(oncall, shutdown).await });
}
