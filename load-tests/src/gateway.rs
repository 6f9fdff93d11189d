//! Starting a real gateway process for a benchmark: a fresh accounts file, operator accounts
//! created with the gateway's own CLI, limits raised so that one loopback address can carry the
//! whole load, and the server pinned to its own core with `taskset` when asked.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const PASSWORD: &str = "load-test-password";

pub struct Gateway {
    pub base: String,
    pub pid: u32,
    child: Child,
    dir: PathBuf,
}

fn env(dir: &Path) -> Vec<(String, String)> {
    [
        (
            "TSUNAGU_DATABASE__SQLITE_PATH",
            dir.join("tsunagu.db").display().to_string(),
        ),
        ("TSUNAGU_SERVER__PORT", "0".into()),
        // Sign-ins with a password alone (no second factor or pledge step to drive).
        ("TSUNAGU_AUTH__REQUIRE_TOTP_FOR", "".into()),
        ("TSUNAGU_AUTH__REQUIRE_PLEDGE", "false".into()),
        (
            "TSUNAGU_LOG__FILTER",
            std::env::var("TSUNAGU_LOAD_NODE_LOG_FILTER").unwrap_or_else(|_| "warn".into()),
        ),
        ("TSUNAGU_CONVERSATION__AUTO_OFFER", "false".into()),
        // One loopback address carries every simulated person: lift the per-address caps that
        // protect a real deployment, but keep the per-connection message limit (the flood
        // scenario measures exactly that).
        ("TSUNAGU_LIMITS__CONVERSATIONS_PER_HOUR", "1000000".into()),
        ("TSUNAGU_LIMITS__CONNECTIONS_PER_ADDRESS", "1000000".into()),
        (
            "TSUNAGU_LIMITS__TCP_CONNECTIONS_PER_ADDRESS",
            "1000000".into(),
        ),
        ("TSUNAGU_LIMITS__LOGINS_PER_MINUTE", "100000".into()),
        ("TSUNAGU_LIMITS__LOGIN_BURST", "100000".into()),
        // A simulated operator answers far more conversations than a person at a console can:
        // lift the operators' own message limit (the visitors' stays).
        (
            "TSUNAGU_LIMITS__OPERATOR_MESSAGES_PER_MINUTE",
            "100000000".into(),
        ),
        ("TSUNAGU_LIMITS__OPERATOR_MESSAGE_BURST", "1000000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl Gateway {
    /// Creates `operators` accounts (op0, op1, …) and starts the gateway, optionally on `core`.
    pub async fn start(
        bin: &Path,
        operators: usize,
        capacity: u32,
        core: Option<usize>,
    ) -> anyhow::Result<Gateway> {
        Self::start_with(bin, operators, capacity, core, &[]).await
    }

    /// As [`Gateway::start`], with more settings (`TSUNAGU_…` variables) on top of the defaults.
    /// The accounts file is made once per (operators, capacity) and copied for later starts:
    /// hashing passwords is the slow part of starting.
    pub async fn start_with(
        bin: &Path,
        operators: usize,
        capacity: u32,
        core: Option<usize>,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Gateway> {
        let dir = std::env::temp_dir().join(format!("tsunagu-load-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir)?;
        let mut vars = env(&dir);
        vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let template = std::env::temp_dir().join(format!(
            "tsunagu-load-users-{}-{operators}-{capacity}.db",
            std::process::id()
        ));
        // The database with its write-ahead log: what the last `user add` wrote may still be
        // only in the log (copying the main file alone lost the last account now and then).
        let copy = |from: &Path, to: &Path| -> std::io::Result<()> {
            std::fs::copy(from, to)?;
            let (from_wal, to_wal) = (wal_of(from), wal_of(to));
            if from_wal.exists() {
                std::fs::copy(from_wal, to_wal)?;
            }
            Ok(())
        };
        if template.exists() {
            copy(&template, &dir.join("tsunagu.db"))?;
        } else {
            add_users(bin, &vars, operators, capacity).await?;
            copy(&dir.join("tsunagu.db"), &template)?;
        }
        let mut cmd = match core {
            Some(c) => {
                let mut t = Command::new("taskset");
                t.args(["-c", &c.to_string()]).arg(bin);
                t
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .envs(vars)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the gateway")?;
        let pid = child.id().context("gateway pid")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let base = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.trim().strip_prefix("Landing page") {
                    return Ok::<_, anyhow::Error>(url.trim().trim_end_matches('/').to_owned());
                }
            }
            bail!("the gateway exited before printing its address")
        })
        .await
        .context("the gateway did not start in time")??;
        // Keep draining stdout (the log) so the child never blocks on a full pipe. With
        // `TSUNAGU_LOAD_NODE_LOGS=<dir>` it is kept in a file there (filter warn, or
        // `TSUNAGU_LOAD_NODE_LOG_FILTER`), for finding out why a run went wrong.
        let mut keep = match std::env::var_os("TSUNAGU_LOAD_NODE_LOGS") {
            Some(d) => Some(std::io::BufWriter::new(std::fs::File::create(
                Path::new(&d).join(format!("gateway-{pid}.log")),
            )?)),
            None => None,
        };
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(f) = keep.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        Ok(Gateway {
            base,
            pid,
            child,
            dir,
        })
    }

    /// CPU time (user + system) the gateway process has used so far.
    pub fn cpu(&self) -> Duration {
        cpu_of(self.pid)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates `operators` accounts (op0, op1, …) with the gateway's own CLI.
/// SQLite's write-ahead log beside database `db` (`<db>-wal`).
fn wal_of(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

async fn add_users(
    bin: &Path,
    vars: &[(String, String)],
    operators: usize,
    capacity: u32,
) -> anyhow::Result<()> {
    for i in 0..operators {
        let mut add = Command::new(bin);
        add.args(["user", "add", "--username", &format!("op{i}")])
            .args(["--display-name", &format!("Op {i}"), "--role", "operator"])
            .args(["--password-stdin", "--capacity", &capacity.to_string()])
            .args(["--languages", "ja,en"])
            .envs(vars.iter().cloned())
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        let mut child = add.spawn().context("running gateway user add")?;
        use tokio::io::AsyncWriteExt;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .await?;
        if !child.wait().await?.success() {
            bail!("gateway user add failed");
        }
    }
    Ok(())
}

/// User + system CPU time of a process, from /proc (Linux).
pub fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the command name.
    let total = ticks(11) + ticks(12);
    // Linux reports in clock ticks of 1/100 s on every platform this runs on.
    Duration::from_millis(total * 10)
}

/// Resident memory of a process in bytes, from /proc (Linux).
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}
