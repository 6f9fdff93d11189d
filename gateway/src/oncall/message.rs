//! What an alert says, in Japanese and English: its kind, severity, category, age, the count it
//! is about, how many people wait, and links (the coordinator view; in an e-mail, a single-use
//! acknowledgement link). Never anything of a conversation, a LINE id or a phone number: the
//! alert row holds none, and this is made from the row alone. The webhook payloads (Slack,
//! Teams, generic JSON) are built here too.

use serde_json::{json, Value};

use crate::alerting::AlertKind;
use crate::clock::Millis;
use crate::db::AlertRow;

/// An alert as told to one person at one time.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub alert: &'a AlertRow,
    pub now: Millis,
    /// The coordinator view.
    pub console_url: String,
    /// A single-use acknowledgement link (e-mail only).
    pub ack_url: Option<String>,
    /// How long the link works, in hours.
    pub ack_hours: u64,
}

/// The kind's name in Japanese and English.
fn kind_names(kind: &str) -> (&'static str, &'static str) {
    let k = [
        AlertKind::Emergency,
        AlertKind::Help,
        AlertKind::NobodyOnDuty,
        AlertKind::FewOnDuty,
        AlertKind::LongWait,
        AlertKind::Overloaded,
        AlertKind::StoreUnreachable,
        AlertKind::NodeDown,
        AlertKind::DeliveryFailing,
    ]
    .into_iter()
    .find(|k| k.as_str() == kind);
    match k {
        Some(AlertKind::Emergency) => ("緊急フラグ", "Emergency flag"),
        Some(AlertKind::Help) => ("相談員からの応援要請", "An operator asks for help"),
        Some(AlertKind::NobodyOnDuty) => ("対応中の相談員がいません", "Nobody on duty"),
        Some(AlertKind::FewOnDuty) => ("相談員が不足しています", "Too few on duty"),
        Some(AlertKind::LongWait) => ("待ち時間が長くなっています", "Long wait"),
        Some(AlertKind::Overloaded) => ("混雑モード", "Overloaded mode"),
        Some(AlertKind::StoreUnreachable) => ("共有ストアに接続できません", "Store unreachable"),
        Some(AlertKind::NodeDown) => ("ゲートウェイのノードが不足しています", "Gateway nodes down"),
        Some(AlertKind::DeliveryFailing) => (
            "ケース管理システムへの送信が失敗しています",
            "Case-system deliveries failing",
        ),
        None => ("アラート", "Alert"),
    }
}

/// An emergency category in Japanese words (for the spoken alert); others as they are.
fn category_ja(c: &str) -> &str {
    match c {
        "self_harm" => "自殺・自傷の危険",
        "harm_to_others" => "他者への危害",
        "abuse_dv" => "虐待・DV",
        "medical" => "急な医療的危険",
        "crime" => "犯罪の疑い",
        "other" => "その他",
        c => c,
    }
}

/// A time in Japan time, `YYYY-MM-DD HH:MM`.
fn jst(at: Millis) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp((at / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(time::UtcOffset::from_hms(9, 0, 0).expect("a valid offset"));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

impl Message<'_> {
    fn age_minutes(&self) -> u64 {
        self.now.saturating_sub(self.alert.started_at) / 60_000
    }

    pub fn subject(&self) -> String {
        let (ja, en) = kind_names(&self.alert.kind);
        format!("[Tsunagu] {ja} / {en} ({})", self.alert.severity)
    }

    /// The one-line summary (webhooks' title).
    pub fn headline(&self) -> String {
        let (ja, en) = kind_names(&self.alert.kind);
        format!(
            "{ja} / {en} ({}), {} min, waiting {}",
            self.alert.severity,
            self.age_minutes(),
            self.alert.waiting
        )
    }

    /// The plain-text body, Japanese first, then English.
    pub fn text(&self) -> String {
        let a = self.alert;
        let (ja, en) = kind_names(&a.kind);
        let started = jst(a.started_at);
        let age = self.age_minutes();
        let mut s = String::new();
        s.push_str(&format!(
            "つなぐ アラート: {ja}（重大度: {}）\n",
            a.severity
        ));
        if let Some(c) = &a.category {
            s.push_str(&format!("分類: {c}\n"));
        }
        s.push_str(&format!("発生: {started} JST（{age}分前）\n"));
        s.push_str(&format!("待機中の相談者: {}人\n", a.waiting));
        s.push_str(&format!("値: {}\n", a.value));
        if let Some(u) = &self.ack_url {
            s.push_str(&format!(
                "確認（応答）する: {u}\n（1回のみ有効、{}時間で失効）\n",
                self.ack_hours
            ));
        }
        s.push_str(&format!("コーディネーター画面: {}\n", self.console_url));
        s.push_str("\n----\n\n");
        s.push_str(&format!("Tsunagu alert: {en} (severity: {})\n", a.severity));
        if let Some(c) = &a.category {
            s.push_str(&format!("Category: {c}\n"));
        }
        s.push_str(&format!("Started: {started} JST ({age} min ago)\n"));
        s.push_str(&format!("People waiting: {}\n", a.waiting));
        s.push_str(&format!("Value: {}\n", a.value));
        if let Some(u) = &self.ack_url {
            s.push_str(&format!(
                "Acknowledge: {u}\n(single use, expires in {} h)\n",
                self.ack_hours
            ));
        }
        s.push_str(&format!("Coordinator view: {}\n", self.console_url));
        s
    }

    /// What a phone call says (Japanese text-to-speech): kind, category, age and waiting
    /// count, in words that read aloud well.
    pub fn spoken(&self) -> String {
        let a = self.alert;
        let (ja, _) = kind_names(&a.kind);
        let mut s = format!("つなぐからのアラートです。{ja}。");
        if let Some(c) = &a.category {
            s.push_str(&format!("分類は{}です。", category_ja(c)));
        }
        s.push_str(&format!(
            "{}分前に発生しました。待っている相談者は{}人です。",
            self.age_minutes(),
            a.waiting
        ));
        s
    }

    /// The facts every payload carries.
    fn facts(&self) -> Vec<(&'static str, String)> {
        let a = self.alert;
        let mut f = vec![
            ("Severity / 重大度", a.severity.clone()),
            (
                "Started / 発生",
                format!("{} JST ({} min)", jst(a.started_at), self.age_minutes()),
            ),
            ("Waiting / 待機中", a.waiting.to_string()),
            ("Value / 値", a.value.to_string()),
        ];
        if let Some(c) = &a.category {
            f.insert(1, ("Category / 分類", c.clone()));
        }
        f
    }

    /// A Slack-compatible incoming-webhook payload.
    pub fn slack(&self) -> Value {
        let mut text = format!("*{}*", self.headline());
        for (k, v) in self.facts() {
            text.push_str(&format!("\n{k}: {v}"));
        }
        text.push_str(&format!(
            "\n<{}|Coordinator view / コーディネーター画面>",
            self.console_url
        ));
        json!({ "text": text })
    }

    /// A Teams-compatible incoming-webhook payload: a message with one Adaptive Card.
    pub fn teams(&self) -> Value {
        let facts: Vec<Value> = self
            .facts()
            .into_iter()
            .map(|(k, v)| json!({ "title": k, "value": v }))
            .collect();
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        { "type": "TextBlock", "text": self.headline(), "weight": "Bolder", "wrap": true },
                        { "type": "FactSet", "facts": facts }
                    ],
                    "actions": [
                        { "type": "Action.OpenUrl", "title": "Coordinator view / コーディネーター画面", "url": self.console_url }
                    ]
                }
            }]
        })
    }

    /// The generic JSON payload: the alert's fields.
    pub fn generic(&self) -> Value {
        let a = self.alert;
        json!({
            "alert": a.id.to_string(),
            "kind": a.kind,
            "severity": a.severity,
            "category": a.category,
            "started_at": a.started_at,
            "age_ms": self.now.saturating_sub(a.started_at),
            "waiting": a.waiting,
            "value": a.value,
            "level": a.level,
            "console_url": self.console_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> AlertRow {
        AlertRow {
            id: ulid::Ulid::new(),
            kind: "emergency".into(),
            severity: "critical".into(),
            category: Some("self_harm".into()),
            value: 1,
            waiting: 3,
            started_at: 1_796_569_200_000,
            acknowledged_at: None,
            acknowledged_by: None,
            acknowledged_name: None,
            acknowledged_channel: None,
            level: 0,
            next_escalation_at: None,
        }
    }

    #[test]
    fn the_text_says_kind_category_age_and_waiting_in_both_languages() {
        let a = row();
        let m = Message {
            alert: &a,
            now: a.started_at + 3 * 60_000,
            console_url: "https://h.example/coordinator".into(),
            ack_url: Some("https://h.example/api/alerts/ack/T".into()),
            ack_hours: 24,
        };
        let t = m.text();
        for needle in [
            "緊急フラグ",
            "Emergency flag",
            "self_harm",
            "3分前",
            "3 min ago",
            "2026-12-07 00:00 JST",
            "待機中の相談者: 3人",
            "People waiting: 3",
            "https://h.example/api/alerts/ack/T",
        ] {
            assert!(t.contains(needle), "{needle} in {t}");
        }
        assert_eq!(
            m.slack()["text"].as_str().map(|s| s.contains("*")),
            Some(true)
        );
        assert_eq!(
            m.teams()["attachments"][0]["content"]["type"],
            "AdaptiveCard"
        );
        assert_eq!(m.generic()["waiting"], 3);
    }
}
