//! Logging. `tracing` with spans that carry ids (conversation, operator, connection), never
//! message text, channel user ids, phone numbers or addresses. Pretty or JSON by config.
//!
//! Some dependencies log frame payloads or headers at debug and trace level (tungstenite,
//! hyper). Those targets are always capped at `info`, whatever filter is configured, so that
//! even a trace-level log carries no message text. `tests/privacy.rs` checks this.
//!
//! [`init`] uses exactly the filter it is given; only the binary lets `RUST_LOG` win over the
//! configured filter ([`requested`]), so a test that asks for trace logs gets them whatever
//! the environment says. Nothing in the library prints outside `tracing`: `print!`,
//! `println!`, `eprint!` and `eprintln!` are denied in `lib.rs`.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Targets that may log payloads or headers below `info`; always capped.
const CAPPED_TARGETS: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "axum",
    "tower_http",
];

/// The filter actually used: `requested`, with [`CAPPED_TARGETS`] capped at `info`.
pub fn filter(requested: &str) -> EnvFilter {
    let mut directives = requested.to_owned();
    for target in CAPPED_TARGETS {
        directives.push_str(&format!(",{target}=info"));
    }
    EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The filter the binary asks for: `RUST_LOG` if set, else the configured `log.filter`.
pub fn requested(configured: &str) -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| configured.to_owned())
}

/// Installs the global subscriber: exactly `requested` (through [`filter`]), JSON when `json`,
/// writing to `sink` (stdout in production, a buffer in tests). A second call does nothing.
pub fn init<W>(requested: &str, json: bool, sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(requested))
        .with_writer(sink)
        .with_target(true);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
