//! The `gateway` binary: flags, logging and start-up only; everything else is in the library.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tsunagu::auth::{Accounts, Role};
use tsunagu::clock::Clock;
use tsunagu::config::Settings;
use tsunagu::Application;

/// mimalloc instead of the system allocator: a waiting person's socket is many small
/// allocations, and glibc's per-thread arenas kept more of them resident (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "gateway", version, about = "Tsunagu helpline gateway")]
struct Cli {
    /// Optional TOML configuration file (environment variables TSUNAGU_* override it).
    #[arg(long, env = "TSUNAGU_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Manage operator accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. The password is read from standard input (one line) with
    /// --password-stdin; otherwise a strong random password is generated and printed once.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long)]
        display_name: String,
        #[arg(long, value_enum, default_value = "operator")]
        role: Role,
        #[arg(long)]
        password_stdin: bool,
        /// Languages this operator can answer in, comma-separated (e.g. ja,en).
        #[arg(long, value_delimiter = ',', default_value = "ja")]
        languages: Vec<String>,
        /// Conversations at once (default: conversation.default_capacity).
        #[arg(long)]
        capacity: Option<u32>,
        /// Where accepted phone calls ring: +81… (E.164) or client:<identity> (browser client).
        #[arg(long)]
        phone: Option<String>,
    },
    /// List accounts.
    List,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::User { command } => user(settings, command),
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    // Before any thread starts (the log writer's, the runtime's).
    let descriptors = tsunagu::startup::reserve_descriptor_table();
    tsunagu::telemetry::init(
        &tsunagu::telemetry::requested(&settings.log.filter),
        settings.log.format == "json",
        std::io::stdout,
    );
    tracing::debug!(?descriptors, "descriptor table reserved");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let app = Application::build(settings).await?;
        let state = app.state();
        let base = app.base_url();
        println!();
        let store = if state.settings.store.redis_url().is_some() {
            "Redis store"
        } else {
            "in-memory store"
        };
        println!("  Tsunagu gateway is running ({store}).");
        println!("    Landing page      {base}/");
        println!("    Widget demo       {base}/widget/demo.html");
        println!("    Operator console  {base}/console/");
        println!("    Coordinator view  {base}/coordinator/");
        if state.engine.escalations.is_none() {
            println!();
            println!("  Emergency flagging is off: no escalation key is set. To turn it on, set");
            println!(
                "  TSUNAGU_ESCALATION__KEY to 64 hex characters (e.g. `openssl rand -hex 32`),"
            );
            println!("  kept outside the repository (see docs/privacy.md).");
        }
        if let Some(code) = state.accounts.pending_setup_code() {
            println!();
            println!("  No accounts yet. Create the first admin at {base}/setup");
            println!("  with this one-time setup code: {code}");
            println!("  (or: gateway user add --username NAME --display-name NAME --role admin)");
        }
        println!();
        let shutdown = state.shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            shutdown.cancel();
        });
        // On a worker, not here: `block_on` runs its future on the main thread, so the accept
        // loop would be a second busy thread beside the worker, and on one core (the load
        // tests pin the server to one) each delays the other by a scheduler slice, several ms.
        tokio::spawn(app.run_until_stopped()).await?
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn user(settings: Settings, command: UserCommand) -> anyhow::Result<()> {
    let accounts = Accounts::load(&settings.auth, Clock::system())?;
    match command {
        UserCommand::Add {
            username,
            display_name,
            role,
            password_stdin,
            languages,
            capacity,
            phone,
        } => {
            if let Some(p) = &phone {
                anyhow::ensure!(
                    tsunagu::connectors::voice::twiml::Target::parse(p).is_some(),
                    "--phone must be +<country code and number> (e.g. +819012345678) or client:<identity>"
                );
            }
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                (line.trim_end_matches(['\r', '\n']).to_owned(), false)
            } else {
                (generate_password(), true)
            };
            let user = accounts
                .add_user(&username, &display_name, role, &password)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            accounts
                .set_routing(user.id, languages, capacity)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if phone.is_some() {
                accounts
                    .set_phone(user.id, phone)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            println!(
                "created {} ({}) as {} in {}",
                user.username,
                user.display_name,
                user.role.as_str(),
                settings.auth.users_file
            );
            if generated {
                if std::io::stdout().is_terminal() {
                    println!("password (shown once): {password}");
                } else {
                    println!("{password}");
                }
            }
        }
        UserCommand::List => {
            for u in accounts.list() {
                println!(
                    "{}\t{}\t{}\t{}",
                    u.username,
                    u.display_name,
                    u.role.as_str(),
                    u.languages.join(",")
                );
            }
        }
    }
    Ok(())
}

fn generate_password() -> String {
    use base64::Engine as _;
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
