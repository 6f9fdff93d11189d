//! Settings: built-in defaults, then an optional TOML file, then environment variables
//! `TSUNAGU_<SECTION>__<KEY>` (for example `TSUNAGU_SERVER__PORT=9000`). Documented in
//! `docs/configuration.md`; keep the two in step.

use std::path::Path;

use serde::{Deserialize, Serialize};

// Each module owns its settings type; this module assembles them into [`Settings`] and depends
// on those modules, never the other way round (ARCHITECTURE.md, "Module dependencies"). The
// re-exports keep `config::AuthSettings` and the like working.
pub use crate::auth::AuthSettings;
pub use crate::db::DatabaseSettings;
pub use crate::directory::DirectorySettings;
pub use crate::engine::ConversationSettings;
pub use crate::escalation::EscalationSettings;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Settings {
    /// Given but not settings (typos): said at start, see [`Settings::ignored`].
    #[serde(skip)]
    ignored: Vec<IgnoredSetting>,
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub conversation: ConversationSettings,
    pub auth: AuthSettings,
    /// Where accounts (and later the rest of the organisation's lasting data) live.
    pub database: DatabaseSettings,
    pub widget: WidgetSettings,
    pub directory: DirectorySettings,
    pub escalation: EscalationSettings,
    /// Server-side alert conditions' thresholds (`gateway/src/alerting/`).
    pub alerts: crate::alerting::AlertSettings,
    /// LINE official accounts (`docs/connectors-line.md`); no channels: the connector is off.
    pub line: crate::connectors::line::LineSettings,
    /// Phone intake through a Twilio-compatible provider (`docs/connectors-phone.md`); off
    /// unless `enabled`.
    pub voice: crate::connectors::voice::VoiceSettings,
    /// Rate limits and connection caps (`gateway/src/limits.rs`).
    pub limits: crate::limits::LimitSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    pub host: String,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// The URL people use to reach the gateway, if it differs from `http://host:port` (behind a
    /// proxy). Its origin is allowed on websocket upgrades.
    pub public_url: Option<String>,
    /// Origins (scheme://host[:port]) allowed to open websockets and call mutating endpoints,
    /// besides the gateway's own. Exact match only.
    pub allowed_origins: Vec<String>,
    /// How often clients ping; a socket silent for three intervals is closed.
    pub heartbeat_ms: u64,
    /// How long shutdown waits for sockets to close before giving up.
    pub shutdown_grace_ms: u64,
    /// On SIGTERM, how long the node goes on serving with `/readyz` answering 503 before it
    /// closes its listener and websockets, so a load balancer's health check takes it out
    /// first. 0: shut down at once.
    pub shutdown_delay_ms: u64,
    /// Outbound frames buffered per socket before a client counts as too slow.
    pub socket_queue: usize,
    /// Serve HTTPS with this PEM certificate chain and key (both or neither). Reloaded on
    /// SIGHUP and when the files change.
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    /// How often the certificate files are checked for changes.
    pub tls_reload_poll_ms: u64,
    /// A connection must send a request's complete headers within this long of opening (TLS
    /// handshake included) and of its previous response, or it is closed.
    pub header_read_timeout_ms: u64,
    /// The most bytes a request's headers may take (at least 8 KiB).
    pub max_header_bytes: usize,
    /// The most TCP connections open at once; 0: the open-files limit less 128.
    pub max_connections: usize,
    /// The last this many of `max_connections` serve only health checks and operators.
    pub reserved_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            host: "127.0.0.1".into(),
            port: 8080,
            public_url: None,
            allowed_origins: Vec::new(),
            heartbeat_ms: 15_000,
            // Kubernetes gives a terminating pod 30 s by default; leave room for the rest.
            shutdown_grace_ms: 10_000,
            shutdown_delay_ms: 0,
            socket_queue: 256,
            tls_cert_file: None,
            tls_key_file: None,
            tls_reload_poll_ms: 2_000,
            // Long enough for a phone on a poor network to send its headers; short enough
            // that idle and half-sent connections do not pile up (issue 17).
            header_read_timeout_ms: 5_000,
            // Browsers' headers, cookies included, are 1-4 KB.
            max_header_bytes: 16 * 1024,
            max_connections: 0,
            reserved_connections: 32,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreSettings {
    /// Unset (or `memory`) for the embedded in-memory store; `redis://host:port/db` (or
    /// `rediss://` for TLS) for one Redis; `redis+sentinel://host:port,host:port/master` for the
    /// primary that Redis Sentinel names. Credentials go in the URL (`redis://user:pass@host`).
    pub url: Option<String>,
    /// Prefix of every key (several helplines can share one Redis with different prefixes).
    pub key_prefix: String,
    /// Backstop TTL of every key of a conversation, renewed on each write; conversations are
    /// deleted explicitly at close, this only catches what a crash left behind.
    pub ttl_secs: u64,
    /// Replicas that must hold a write before it is acknowledged (`WAIT`); 0 does not wait.
    pub wait_replicas: u32,
    /// How long to wait for them before refusing the write as unavailable.
    pub wait_timeout_ms: u64,
    /// This gateway node's id; unset: a new random one at each start.
    pub node_id: Option<String>,
    /// With `rediss://`: PEM certificates the Redis server's certificate must chain to (a
    /// private CA); unset: the system's root certificates.
    pub tls_ca_file: Option<String>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: None,
            key_prefix: "tsunagu".into(),
            ttl_secs: 24 * 3600,
            wait_replicas: 0,
            wait_timeout_ms: 200,
            node_id: None,
            tls_ca_file: None,
        }
    }
}

impl StoreSettings {
    /// The Redis URL, if the store is Redis.
    pub fn redis_url(&self) -> Option<&str> {
        self.url.as_deref().filter(|u| *u != "memory")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WidgetSettings {
    /// Where quick exit sends the person: a harmless page.
    pub quick_exit_url: String,
    /// The helpline's phone number, offered as an equal choice to chat.
    pub phone_number: Option<String>,
    pub phone_hours: Option<String>,
    pub languages: Vec<String>,
}

impl Default for WidgetSettings {
    fn default() -> Self {
        WidgetSettings {
            quick_exit_url: "https://www.google.com/search?q=%E5%A4%A9%E6%B0%97".into(),
            phone_number: None,
            phone_hours: None,
            languages: vec!["ja".into(), "en".into()],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    /// `pretty` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `tsunagu=debug,info`. `RUST_LOG` wins if set.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: "pretty".into(),
            filter: "info".into(),
        }
    }
}

impl Settings {
    /// Defaults, then `file` if given, then `TSUNAGU_*` environment variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        Self::load_from(file, config::Environment::with_prefix("TSUNAGU"))
    }

    fn load_from(file: Option<&Path>, env: config::Environment) -> anyhow::Result<Settings> {
        let mut builder =
            config::Config::builder().add_source(config::Config::try_from(&Settings::default())?);
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        let env = env
            .prefix_separator("_")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("server.allowed_origins")
            .with_list_parse_key("widget.languages")
            .with_list_parse_key("conversation.categories")
            .with_list_parse_key("escalation.checklist")
            .with_list_parse_key("voice.helplines")
            .with_list_parse_key("limits.trusted_proxies")
            .with_list_parse_key("auth.require_totp_for")
            .try_parsing(true);
        let built = builder.add_source(env).build()?;
        let mut ignored = Vec::new();
        let mut settings: Settings = serde_ignored::deserialize(built.clone(), |path| {
            let key = path.to_string();
            if key.contains('.') {
                ignored.push(key);
            } else if let Ok(section) = built.get_table(&key) {
                // A section that does not exist; a top-level key that is not a table is another
                // `TSUNAGU_` variable (see `ignored`).
                ignored.extend(section.keys().map(|k| format!("{key}.{k}")));
            }
        })?;
        settings.ignored = IgnoredSetting::with_nearest(ignored)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The settings that were given (in the file or as `TSUNAGU_<SECTION>__<KEY>` variables)
    /// but name no setting, each with the nearest setting if one is close. The loader ignores
    /// them, so a misspelt `TSUNAGU_AUTH__COOKIE_SECUR` would otherwise leave a default in force
    /// without a word. Only names with `__` come from the environment as settings; others with
    /// the prefix (`TSUNAGU_CONFIG`, or the `TSUNAGU_SERVICE_HOST` Kubernetes adds for a Service
    /// named `tsunagu`) are not settings and are not reported.
    pub fn ignored(&self) -> &[IgnoredSetting] {
        &self.ignored
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.auth.validate()?;
        anyhow::ensure!(
            self.conversation.default_capacity > 0,
            "conversation.default_capacity must be at least 1"
        );
        anyhow::ensure!(
            !self.conversation.categories.is_empty(),
            "conversation.categories must not be empty"
        );
        anyhow::ensure!(
            self.server.heartbeat_ms >= 100,
            "server.heartbeat_ms must be at least 100"
        );
        anyhow::ensure!(
            self.server.socket_queue >= 8,
            "server.socket_queue must be at least 8"
        );
        anyhow::ensure!(
            self.server.tls_cert_file.is_some() == self.server.tls_key_file.is_some(),
            "server.tls_cert_file and server.tls_key_file go together"
        );
        let al = &self.alerts;
        anyhow::ensure!(al.check_ms >= 100, "alerts.check_ms must be at least 100");
        anyhow::ensure!(
            al.open_from_hour <= 23 && al.open_until_hour <= 24,
            "alerts.open_from_hour must be 0-23 and alerts.open_until_hour 0-24"
        );
        let esc = &self.escalation;
        if esc.is_enabled() {
            use secrecy::ExposeSecret;
            let key = esc.key.as_ref().ok_or_else(|| {
                anyhow::anyhow!(
                    "escalation is enabled but escalation.key is not set \
                     (TSUNAGU_ESCALATION__KEY: 64 hex characters); refusing to start"
                )
            })?;
            let bytes = hex::decode(key.expose_secret().trim())
                .map_err(|_| anyhow::anyhow!("escalation.key must be 64 hex characters"))?;
            anyhow::ensure!(
                bytes.len() == 32,
                "escalation.key must be 64 hex characters (32 bytes)"
            );
            anyhow::ensure!(
                esc.webhook_url.is_none() || esc.webhook_secret.is_some(),
                "escalation.webhook_url is set but escalation.webhook_secret is not"
            );
        }
        if let Some(url) = self.store.redis_url() {
            anyhow::ensure!(
                ["redis://", "rediss://", "redis+sentinel://"]
                    .iter()
                    .any(|s| url.starts_with(s)),
                "store.url must be `memory`, redis://…, rediss://… or redis+sentinel://…"
            );
            crate::store::redis::Redis::open(url).map_err(|e| {
                anyhow::anyhow!(
                    "store.url {} is not a valid Redis URL: {e}",
                    crate::store::redis::redacted(url)
                )
            })?;
            anyhow::ensure!(
                !self.store.key_prefix.is_empty() && !self.store.key_prefix.contains(' '),
                "store.key_prefix must be a non-empty word"
            );
            anyhow::ensure!(
                self.store.ttl_secs >= 60,
                "store.ttl_secs must be at least 60"
            );
        }
        Ok(())
    }

    /// Settings for tests: a free port, short timers, quiet logs, a database in memory.
    pub fn for_tests() -> Settings {
        let mut s = Settings::default();
        s.server.port = 0;
        s.server.heartbeat_ms = 1_000;
        s.server.shutdown_grace_ms = 2_000;
        s.conversation.tick_ms = 20;
        s.database.url = Some("memory".into());
        // Tests that are not about the sign-in's extra steps sign in with a password alone;
        // those about them (tests/api/admin*.rs) put the defaults back.
        s.auth.require_totp_for = Vec::new();
        s.auth.require_pledge = false;
        s
    }

    /// Settings read from the TOML text `toml` alone, no defaults under it (unit tests of the
    /// sections' own parsing).
    #[cfg(test)]
    pub(crate) fn from_toml(toml: &str) -> Settings {
        config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap()
    }
}

/// A setting that was given but names no setting (see [`Settings::ignored`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredSetting {
    /// The dotted key, as in the file: `auth.cookie_secur`.
    pub key: String,
    /// The nearest setting's dotted key, if one is within three edits.
    pub nearest: Option<String>,
}

impl IgnoredSetting {
    fn with_nearest(mut keys: Vec<String>) -> anyhow::Result<Vec<IgnoredSetting>> {
        use config::Source;
        keys.sort();
        let defaults = config::Config::try_from(&Settings::default())?.collect()?;
        let mut known = Vec::new();
        flatten("", &defaults, &mut known);
        Ok(keys
            .into_iter()
            .map(|key| {
                let nearest = known
                    .iter()
                    .map(|k| (strsim::levenshtein(k, &key), k))
                    .filter(|(d, _)| *d <= 3)
                    .min()
                    .map(|(_, k)| k.clone());
                IgnoredSetting { key, nearest }
            })
            .collect())
    }

    /// The key as an environment variable: `TSUNAGU_AUTH__COOKIE_SECUR`.
    pub fn variable(key: &str) -> String {
        format!("TSUNAGU_{}", key.replace('.', "__").to_uppercase())
    }
}

impl std::fmt::Display for IgnoredSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (key, var) = (&self.key, Self::variable(&self.key));
        write!(f, "`{key}` ({var}) is not a setting and is ignored")?;
        match &self.nearest {
            Some(n) => write!(f, "; did you mean `{n}` ({})?", Self::variable(n)),
            None => write!(f, " (see docs/configuration.md)"),
        }
    }
}

/// Every setting's dotted key under `prefix` (a table's own key too: a section set as a whole).
fn flatten(prefix: &str, table: &config::Map<String, config::Value>, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if let config::ValueKind::Table(inner) = &v.kind {
            flatten(&key, inner, out);
        }
        out.push(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> config::Environment {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        config::Environment::with_prefix("TSUNAGU").source(Some(map))
    }

    #[test]
    fn defaults_load_without_any_file_or_environment() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(s.server.host, "127.0.0.1");
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.conversation.default_capacity, 2);
    }

    #[test]
    fn environment_overrides_nested_keys_and_lists() {
        let s = Settings::load_from(
            None,
            env(&[
                ("TSUNAGU_SERVER__PORT", "9123"),
                ("TSUNAGU_CONVERSATION__OFFER_TIMEOUT_MS", "5000"),
                (
                    "TSUNAGU_SERVER__ALLOWED_ORIGINS",
                    "https://a.example,https://b.example",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.port, 9123);
        assert_eq!(s.conversation.offer_timeout_ms, 5000);
        assert_eq!(
            s.server.allowed_origins,
            vec!["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn a_misspelt_setting_is_named_with_the_setting_it_is_nearest_to() {
        let s = Settings::load_from(
            None,
            env(&[
                ("TSUNAGU_SERVER__PORT", "7000"),
                // A key of a section's flattened part is a setting too.
                ("TSUNAGU_ALERTS__DISPATCH_MS", "700"),
                ("TSUNAGU_AUTH__COOKIE_SECUR", "true"),
                ("TSUNAGU_NO_SUCH__THING_AT_ALL", "1"),
                ("TSUNAGU_CONFIG", "x.toml"),
                ("TSUNAGU_SERVICE_HOST", "10.0.0.1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.port, 7000);
        assert_eq!(s.alerts.delivery.dispatch_ms, 700);
        let said: Vec<String> = s.ignored().iter().map(|i| i.to_string()).collect();
        assert_eq!(
            said,
            vec![
                "`auth.cookie_secur` (TSUNAGU_AUTH__COOKIE_SECUR) is not a setting and is \
                 ignored; did you mean `auth.cookie_secure` (TSUNAGU_AUTH__COOKIE_SECURE)?",
                "`no_such.thing_at_all` (TSUNAGU_NO_SUCH__THING_AT_ALL) is not a setting and is \
                 ignored (see docs/configuration.md)",
            ]
        );
    }

    #[test]
    fn every_setting_variable_the_docs_and_deploy_files_name_is_a_setting() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut names = Vec::new();
        let mut files = vec![root.join("README.md")];
        for dir in [
            "docs",
            "deploy/compose",
            "deploy/kubernetes",
            "deploy/systemd",
        ] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                files.push(entry.unwrap().path());
            }
        }
        for file in files.iter().filter(|f| f.is_file()) {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            for (at, _) in text.match_indices("TSUNAGU_") {
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let name = name.trim_end_matches('_');
                // The docs' own example of the warning names a misspelt one.
                let example = text[at + name.len()..].starts_with(") is not a setting");
                if name.contains("__") && !example {
                    names.push((name.to_string(), file.clone()));
                }
            }
        }
        assert!(names.len() > 20, "found only {names:?}");
        for (name, file) in names {
            // Only the key matters: a value a setting refuses is an error, not an ignored key.
            let key = name["TSUNAGU_".len()..].to_lowercase().replace("__", ".");
            let ignored = match Settings::load_from(None, env(&[(&name, "")])) {
                Ok(s) => s.ignored().iter().any(|i| i.key == key),
                Err(_) => false,
            };
            assert!(!ignored, "{} names {name}: no such setting", file.display());
        }
    }

    #[test]
    fn second_factors_are_required_of_coordinators_and_admins_unless_turned_off() {
        use crate::auth::Role;
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert!(s.auth.totp_required(Role::Admin) && s.auth.totp_required(Role::Coordinator));
        assert!(!s.auth.totp_required(Role::Operator));
        assert!(s.auth.require_pledge);
        // An empty variable is an empty list (tests not about second factors).
        let off = env(&[("TSUNAGU_AUTH__REQUIRE_TOTP_FOR", "")]);
        let s = Settings::load_from(None, off).unwrap();
        assert!(!s.auth.totp_required(Role::Admin));
        // A name that is not a role refuses to start rather than dropping a requirement.
        let typo = env(&[("TSUNAGU_AUTH__REQUIRE_TOTP_FOR", "operator,admins")]);
        assert!(Settings::load_from(None, typo).is_err());
    }

    #[test]
    fn a_file_is_layered_under_the_environment() {
        let dir = std::env::temp_dir().join(format!("tsunagu-cfg-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.toml");
        std::fs::write(
            &path,
            "[server]\nport = 7000\nhost = \"0.0.0.0\"\n[conversation]\ndefault_capacity = 3\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), env(&[("TSUNAGU_SERVER__PORT", "7001")])).unwrap();
        assert_eq!(s.server.host, "0.0.0.0");
        assert_eq!(s.server.port, 7001);
        assert_eq!(s.conversation.default_capacity, 3);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn flagging_is_enabled_by_a_key_and_refuses_to_start_without_one() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert!(!s.escalation.is_enabled());
        let key = "ab".repeat(32);
        let s = Settings::load_from(None, env(&[("TSUNAGU_ESCALATION__KEY", &key)])).unwrap();
        assert!(s.escalation.is_enabled());
        assert!(
            Settings::load_from(None, env(&[("TSUNAGU_ESCALATION__ENABLED", "true")])).is_err()
        );
        assert!(Settings::load_from(None, env(&[("TSUNAGU_ESCALATION__KEY", "short")])).is_err());
        assert!(
            Settings::load_from(
                None,
                env(&[
                    ("TSUNAGU_ESCALATION__KEY", &key),
                    (
                        "TSUNAGU_ESCALATION__WEBHOOK_URL",
                        "https://case.example/hook"
                    )
                ])
            )
            .is_err(),
            "a webhook without a secret"
        );
    }

    #[test]
    fn nonsense_is_a_startup_error() {
        assert!(Settings::load_from(
            None,
            env(&[("TSUNAGU_CONVERSATION__DEFAULT_CAPACITY", "0")])
        )
        .is_err());
        assert!(Settings::load_from(None, env(&[("TSUNAGU_STORE__URL", "postgres://x")])).is_err());
        assert!(Settings::load_from(None, env(&[("TSUNAGU_STORE__URL", "redis://x:1/")])).is_ok());
    }
}
