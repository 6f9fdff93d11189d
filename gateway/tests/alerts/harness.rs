//! The alert tests' setting: the real app on a manual clock (at noon in Japan, outside the
//! service hours the staffing conditions watch, so only the alerts a test raises are paged), a
//! real SMTP server, a webhook receiver, and a rota of people set up through the API.

use std::time::Duration;

use serde_json::{json, Value};
use tsunagu::auth::Role;
use tsunagu::clock::Clock;

use crate::helpers::*;
use crate::receiver::Receiver;
use crate::smtp::SmtpSink;

/// A 32-byte test key (emergency flagging on).
const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// 2026-12-07 12:00 JST, a Monday.
pub const NOON_JST: u64 = 1_796_569_200_000 + 12 * 3_600_000;
pub const SECRET: &str = "webhook secret of the test";
/// How long a critical alert waits for an acknowledgement before it goes further.
pub const ACK_TIMEOUT_MS: u64 = 60_000;
/// Written in the conversation: must be in no alert.
pub const CANARY: &str = "カナリア canary 7f3a";

pub struct World {
    pub app: TestApp,
    pub clock: Clock,
    pub smtp: SmtpSink,
    pub hooks: Receiver,
    pub coord: String,
    /// The people on the rota, in order: (account id, username).
    pub people: Vec<(String, String)>,
}

pub async fn world(people: usize) -> World {
    world_with(people, None, |_| {}).await
}

pub async fn world_with(
    people: usize,
    tls: Option<(&std::path::Path, &std::path::Path)>,
    tune: impl FnOnce(&mut tsunagu::config::Settings),
) -> World {
    let clock = Clock::manual(NOON_JST);
    let smtp = SmtpSink::start(tls);
    let hooks = Receiver::start(SECRET, NOON_JST).await;
    let port = smtp.port;
    let app = spawn_app_with_clock(clock.clone(), move |s| {
        s.escalation.key = Some(KEY.into());
        s.alerts.open_from_hour = 3;
        s.alerts.open_until_hour = 4;
        let d = &mut s.alerts.delivery;
        d.dispatch_ms = 20;
        d.ack_timeout_ms.critical = ACK_TIMEOUT_MS;
        d.ack_timeout_ms.warning = ACK_TIMEOUT_MS;
        d.delivery_backoff_ms = 1_000;
        d.smtp.host = Some("127.0.0.1".into());
        d.smtp.port = port;
        d.smtp.from = "Tsunagu <alerts@helpline.example>".into();
        d.smtp.starttls = tsunagu::alerting::StartTls::None;
        d.webhook_secrets
            .insert("team".into(), SECRET.to_owned().into());
        tune(s);
    })
    .await;
    let coord = app.coordinator().await;
    let mut list = Vec::new();
    for i in 0..people {
        let name = format!("oncall{i}");
        let (id, _) = app.session(&name, Role::Coordinator, None).await;
        list.push((id, name));
    }
    World {
        app,
        clock,
        smtp,
        hooks,
        coord,
        people: list,
    }
}

impl World {
    /// A request with the session and the app's origin (as the console sends).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> reqwest::Response {
        self.app
            .http()
            .request(method, format!("{}{path}", self.app.base))
            .header("cookie", &self.coord)
            .header("origin", &self.app.base)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Everyone on the rota all week, in order.
    pub async fn rota_all_week(&self) {
        let mut ranges = Vec::new();
        for (pos, (id, _)) in self.people.iter().enumerate() {
            for day in 0..7 {
                ranges.push(json!({"account": id, "weekday": day, "start_minute": 0,
                    "end_minute": 1440, "position": pos}));
            }
        }
        let r = self
            .send(
                reqwest::Method::PUT,
                "/api/oncall/schedule",
                json!({"ranges": ranges}),
            )
            .await;
        assert_eq!(r.status(), 204);
    }

    /// Person `i` gets e-mail at `<name>@helpline.example` and, if `format` is given, a
    /// webhook at `/<name>` on the receiver, signed with the `team` secret.
    pub async fn channels(&self, i: usize, format: Option<&str>) {
        let (id, name) = &self.people[i];
        let mut body = json!({"email": format!("{name}@helpline.example")});
        if let Some(f) = format {
            body["webhook_url"] = json!(format!("{}/{name}", self.hooks.base));
            body["webhook_format"] = json!(f);
            body["webhook_secret_ref"] = json!("team");
        }
        let r = self
            .send(
                reqwest::Method::PUT,
                &format!("/api/oncall/channels/{id}"),
                body,
            )
            .await;
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    }

    /// An operator (off duty: they take by hand) takes a person's conversation, in which the person writes the
    /// canary, and flags it: an emergency alert. Returns the operator (keep it: its socket).
    pub async fn flag(&self, operator: &str) -> Operator {
        let mut op = self.app.operator(operator, 2, false).await;
        let mut v = self.app.visitor("ja").await;
        v.say(CANARY).await;
        let c = op.take().await;
        let r = op
            .act("flag", &c, json!({"category":"self_harm","reason":"危険"}))
            .await;
        assert_eq!(r["type"], "ack", "{r}");
        op
    }

    /// The alerts the API lists, newest first.
    pub async fn alerts(&self) -> Vec<Value> {
        self.app
            .get_json_as(&self.coord, "/api/oncall/alerts")
            .await["alerts"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The alert audit trail.
    pub async fn audit(&self) -> Vec<Value> {
        self.app.get_json_as(&self.coord, "/api/oncall/audit").await["entries"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits until `n` delivery attempts by `channel` are recorded (an attempt's outcome, and
    /// so its next attempt's time, is written after the receiver has seen it).
    pub async fn wait_attempts(&self, channel: &str, n: usize) {
        let db = self.app.state.engine.oncall.as_ref().unwrap().db();
        let start = std::time::Instant::now();
        loop {
            let done = db
                .alert_audit(None, 10_000)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.action == "delivery_attempt" && e.channel.as_deref() == Some(channel))
                .count();
            if done >= n {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{n} attempts recorded"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Moves the clock on and gives the dispatcher (every 20 ms) time to see it.
    pub async fn advance(&self, ms: u64) {
        self.clock.advance(ms);
        self.hooks.set_now(self.clock.now_ms());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
