//! The `gateway` binary: flags, logging and start-up only; everything else is in the library.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tsunagu::auth::{Accounts, Role};
use tsunagu::clock::Clock;
use tsunagu::config::Settings;
use tsunagu::db::{self, Db};
use tsunagu::escalation::Escalations;
use tsunagu::Application;

/// mimalloc instead of the system allocator: a waiting person's socket is many small
/// allocations, and glibc's per-thread arenas kept more of them resident (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Where earlier versions kept accounts by default (`auth.users_file`), now only an import source.
const OLD_USERS_FILE: &str = "data/users.json";
/// Where earlier versions kept escalation records by default (`escalation.dir`), now only an
/// import source.
const OLD_ESCALATION_DIR: &str = "data/escalations";

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
    /// Bring the database's schema up to date (the gateway also does at start) and exit.
    Migrate,
    /// Import data kept in files by earlier versions into the database.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Rotate the escalation key: every record is decrypted with `escalation.key` and sealed
    /// again under the key in the variable TSUNAGU_NEW_ESCALATION_KEY (64 hex characters).
    /// Run with every gateway stopped, then set `escalation.key` to the new key.
    Rekey,
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Import an accounts file (`users.json`, formerly `auth.users_file`). Accounts the
    /// database already holds are left as they are, so importing twice changes nothing.
    Users {
        /// The accounts file.
        file: PathBuf,
    },
    /// Import an escalation directory (formerly `escalation.dir`: `*.rec` files and
    /// `audit.jsonl`). The records stay sealed as they are and must open with the configured
    /// `escalation.key`; records and audit entries already imported are left as they are, so
    /// importing twice changes nothing.
    Escalations {
        /// The directory.
        dir: PathBuf,
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
    /// Disable an account: it can no longer sign in, and its sessions are refused.
    Disable { username: String },
    /// Enable a disabled account again.
    Enable { username: String },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    let command = cli.command.unwrap_or(Command::Serve);
    if !matches!(command, Command::Serve) {
        for ignored in settings.ignored() {
            eprintln!("warning: {ignored}");
        }
    }
    match command {
        Command::Serve => serve(settings),
        Command::User { command } => run_blocking(user(settings, command)),
        Command::Migrate => run_blocking(migrate(settings)),
        Command::Import { command } => run_blocking(import(settings, command)),
        Command::Rekey => run_blocking(rekey(settings)),
    }
}

/// Runs one CLI command's future to completion.
fn run_blocking(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// The database in `settings`, migrated, and the accounts in it.
async fn open_accounts(settings: &Settings) -> anyhow::Result<(Db, Accounts)> {
    let db = Db::open(&settings.database)
        .await
        .with_context(|| format!("opening {}", db::describe(&settings.database)))?;
    let accounts = Accounts::open(&settings.auth, db.clone(), Clock::system()).await?;
    Ok((db, accounts))
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let db = Db::connect(&settings.database)
        .await
        .with_context(|| format!("opening {}", db::describe(&settings.database)))?;
    let applied = db.migrate().await?;
    println!(
        "{}: {applied} migration(s) applied, schema up to date",
        db::describe(&settings.database)
    );
    db.close().await;
    Ok(())
}

async fn import(settings: Settings, command: ImportCommand) -> anyhow::Result<()> {
    let (db, accounts) = open_accounts(&settings).await?;
    match command {
        ImportCommand::Escalations { dir } => {
            let esc = Escalations::open(&settings.escalation, db.clone(), Clock::system())?
                .context(
                    "emergency flagging is not enabled: set escalation.key \
                     (TSUNAGU_ESCALATION__KEY), the key the records were sealed with",
                )?;
            let report = esc.import_dir(&dir).await?;
            println!(
                "{}: {} escalation record(s) imported, {} already present, {} audit entr(ies) imported",
                db::describe(&settings.database),
                report.done.imported,
                report.done.present,
                report.done.audit_imported
            );
            for path in &report.unreadable {
                println!(
                    "not imported: {} does not open with the configured key",
                    path.display()
                );
            }
            if report.bad_audit_lines > 0 {
                println!(
                    "not imported: {} unreadable line(s) of audit.jsonl",
                    report.bad_audit_lines
                );
            }
        }
        ImportCommand::Users { file } => {
            let out = accounts.import_file(&file).await?;
            println!(
                "{}: {} account(s) imported, {} already present",
                db::describe(&settings.database),
                out.imported,
                out.present
            );
            for name in &out.conflicts {
                println!("not imported: username {name} belongs to another account already");
            }
        }
    }
    db.close().await;
    Ok(())
}

/// The variable holding the new escalation key for `gateway rekey` (never a command-line
/// argument: those are visible to every user of the machine).
const NEW_KEY_VAR: &str = "TSUNAGU_NEW_ESCALATION_KEY";

async fn rekey(settings: Settings) -> anyhow::Result<()> {
    let db = Db::open(&settings.database)
        .await
        .with_context(|| format!("opening {}", db::describe(&settings.database)))?;
    let old = Escalations::open(&settings.escalation, db.clone(), Clock::system())?
        .context("emergency flagging is not enabled: set escalation.key, the key in use")?;
    let mut new_cfg = settings.escalation.clone();
    new_cfg.key = Some(
        std::env::var(NEW_KEY_VAR)
            .with_context(|| format!("set {NEW_KEY_VAR} to the new key (64 hex characters)"))?
            .into(),
    );
    let new = Escalations::open(&new_cfg, db.clone(), Clock::system())?
        .context("the new key could not be used")?;
    let done = old.rekey(&new).await.context(
        "rotation stopped: a record does not open with escalation.key (nothing more was changed)",
    )?;
    println!(
        "{}: {} escalation record(s) sealed under the new key, {} already were; now set \
         escalation.key to the new key on every node",
        db::describe(&settings.database),
        done.rekeyed,
        done.already
    );
    db.close().await;
    Ok(())
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    // Before any thread starts (the log writer's, the runtime's).
    let descriptors = tsunagu::startup::reserve_descriptor_table();
    tsunagu::telemetry::init(
        &tsunagu::telemetry::requested(&settings.log.filter),
        settings.log.format == "json",
        std::io::stdout,
    );
    // Keys and variable names only, never a value (it may be a secret).
    for ignored in settings.ignored() {
        tracing::warn!("{ignored}");
    }
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
        println!(
            "    Accounts          {}",
            db::describe(&state.settings.database)
        );
        if state.engine.escalations.is_none() {
            println!();
            println!("  Emergency flagging is off: no escalation key is set. To turn it on, set");
            println!(
                "  TSUNAGU_ESCALATION__KEY to 64 hex characters (e.g. `openssl rand -hex 32`),"
            );
            println!("  kept outside the repository (see docs/privacy.md).");
        }
        if state.accounts.list().is_empty() && std::path::Path::new(OLD_USERS_FILE).exists() {
            println!();
            println!("  {OLD_USERS_FILE} (accounts of an earlier version) is no longer read.");
            println!("  Import it once: gateway import users {OLD_USERS_FILE}");
        }
        if state.engine.escalations.is_some()
            && std::path::Path::new(OLD_ESCALATION_DIR).is_dir()
        {
            println!();
            println!("  {OLD_ESCALATION_DIR} (escalation records of an earlier version) is no longer read.");
            println!("  Import it once: gateway import escalations {OLD_ESCALATION_DIR}");
        }
        if let Some(code) = state.accounts.pending_setup_code() {
            println!();
            println!("  No accounts yet. Create the first admin at {base}/setup");
            println!("  with this one-time setup code: {code}");
            println!("  (or: gateway user add --username NAME --display-name NAME --role admin)");
        }
        println!();
        let stopping = std::sync::Arc::clone(&state);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            tsunagu::startup::stop(&stopping, wait_for_signal()).await;
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

async fn user(settings: Settings, command: UserCommand) -> anyhow::Result<()> {
    let (db, accounts) = open_accounts(&settings).await?;
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
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            accounts
                .set_routing(user.id, languages, capacity)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if phone.is_some() {
                accounts
                    .set_phone(user.id, phone)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            println!(
                "created {} ({}) as {} in {}",
                user.username,
                user.display_name,
                user.role.as_str(),
                db::describe(&settings.database)
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
                    "{}\t{}\t{}\t{}{}",
                    u.username,
                    u.display_name,
                    u.role.as_str(),
                    u.languages.join(","),
                    if u.disabled { "\tdisabled" } else { "" }
                );
            }
        }
        UserCommand::Disable { username } => set_disabled(&accounts, &username, true).await?,
        UserCommand::Enable { username } => set_disabled(&accounts, &username, false).await?,
    }
    db.close().await;
    Ok(())
}

async fn set_disabled(accounts: &Accounts, username: &str, disabled: bool) -> anyhow::Result<()> {
    let user = accounts
        .list()
        .into_iter()
        .find(|u| u.username == username)
        .ok_or_else(|| anyhow::anyhow!("no account named {username}"))?;
    accounts
        .set_disabled(user.id, disabled)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "{username} {}",
        if disabled { "disabled" } else { "enabled" }
    );
    Ok(())
}

fn generate_password() -> String {
    use base64::Engine as _;
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
