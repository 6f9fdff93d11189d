//! Logging. `tracing` with spans that carry ids (conversation, operator, connection), never
//! message text, user ids of channels, phone numbers or addresses. Pretty or JSON by config.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `filter` unless `RUST_LOG` is set, JSON when `json`, writing
/// to `sink` (stdout in production, a buffer or `std::io::sink` in tests). Calling it twice is
/// harmless: the second call does nothing.
pub fn init<W>(filter: &str, json: bool, sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink)
        .with_target(false);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
