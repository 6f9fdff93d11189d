//! Gateway nodes: the real `gateway` binary as child processes sharing one accounts database
//! (a SQLite file: the nodes run on one machine), each
//! printing its address on the stdout line that starts with "Landing page". A node is killed
//! (SIGKILL) on drop; `kill9` does the same on purpose, mid-test.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::redis::{tail, temp_dir};

pub const PASSWORD: &str = "cluster-test-password";
/// Operator accounts `op0` … `op{OPERATORS-1}`, capacity `CAPACITY`, languages ja and en.
pub const OPERATORS: usize = 24;
pub const CAPACITY: u32 = 3;
/// A coordinator account (dashboard).
pub const COORDINATOR: &str = "coord";

/// The accounts database every node of every test shares, created once with the gateway's CLI.
pub struct Accounts {
    pub database: PathBuf,
}

pub fn gateway_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gateway")
}

pub fn accounts() -> &'static Accounts {
    static ACCOUNTS: OnceLock<Accounts> = OnceLock::new();
    ACCOUNTS.get_or_init(|| {
        let dir = temp_dir("accounts");
        let database = dir.join("tsunagu.db");
        let add = |username: &str, role: &str, capacity: Option<u32>| {
            let mut cmd = Command::new(gateway_bin());
            cmd.args(["user", "add", "--username", username])
                .args(["--display-name", &format!("Op {username}"), "--role", role])
                .args(["--password-stdin", "--languages", "ja,en"])
                .env("TSUNAGU_DATABASE__SQLITE_PATH", &database)
                .env("TSUNAGU_LOG__FILTER", "warn")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            if let Some(c) = capacity {
                cmd.args(["--capacity", &c.to_string()]);
            }
            let mut child = cmd.spawn().expect("gateway user add runs");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{PASSWORD}\n").as_bytes())
                .unwrap();
            assert!(
                child.wait().unwrap().success(),
                "gateway user add {username}"
            );
        };
        add("admin", "admin", None);
        add(COORDINATOR, "coordinator", None);
        for i in 0..OPERATORS {
            add(&format!("op{i}"), "operator", Some(CAPACITY));
        }
        Accounts { database }
    })
}

/// The environment every node gets; a test adds its own (store URL, prefix, timeouts).
pub fn base_env(_dir: &Path) -> Vec<(String, String)> {
    let a = accounts();
    [
        (
            "TSUNAGU_DATABASE__SQLITE_PATH",
            a.database.display().to_string(),
        ),
        ("TSUNAGU_SERVER__HOST", "127.0.0.1".into()),
        // Sign-ins with a password alone: these tests are not about second factors or the
        // pledge (tests/cluster/accounts.rs puts them back where it needs them).
        ("TSUNAGU_AUTH__REQUIRE_TOTP_FOR", "".into()),
        ("TSUNAGU_AUTH__REQUIRE_PLEDGE", "false".into()),
        ("TSUNAGU_SERVER__PORT", "0".into()),
        ("TSUNAGU_SERVER__SHUTDOWN_GRACE_MS", "1000".into()),
        ("TSUNAGU_LOG__FILTER", "warn".into()),
        ("TSUNAGU_LOG__FORMAT", "pretty".into()),
        ("TSUNAGU_CONVERSATION__AUTO_OFFER", "false".into()),
        ("TSUNAGU_CONVERSATION__TICK_MS", "100".into()),
        // Every simulated person comes from 127.0.0.1: lift the per-address caps.
        ("TSUNAGU_LIMITS__CONVERSATIONS_PER_HOUR", "1000000".into()),
        ("TSUNAGU_LIMITS__CONNECTIONS_PER_ADDRESS", "1000000".into()),
        (
            "TSUNAGU_LIMITS__TCP_CONNECTIONS_PER_ADDRESS",
            "1000000".into(),
        ),
        ("TSUNAGU_LIMITS__LOGINS_PER_MINUTE", "100000".into()),
        ("TSUNAGU_LIMITS__LOGIN_BURST", "100000".into()),
        ("TSUNAGU_LIMITS__MESSAGES_PER_MINUTE", "1000000".into()),
        ("TSUNAGU_LIMITS__MESSAGE_BURST", "100000".into()),
        (
            "TSUNAGU_LIMITS__OPERATOR_MESSAGES_PER_MINUTE",
            "1000000".into(),
        ),
        ("TSUNAGU_LIMITS__OPERATOR_MESSAGE_BURST", "100000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// One gateway process.
pub struct Node {
    pub name: String,
    pub base: String,
    pub ws_base: String,
    pub pid: u32,
    child: std::sync::Mutex<Option<Child>>,
    dir: PathBuf,
}

impl Node {
    /// Starts a node with the base environment plus `env` (later entries win).
    pub async fn start(name: &str, env: &[(&str, String)]) -> Node {
        Self::start_via(name, env, &[]).await
    }

    /// Like [`Node::start`], through a wrapper command that ends by running the program it is
    /// given, in the same process (`ip netns exec <ns>` puts the node in a network namespace).
    pub async fn start_via(name: &str, env: &[(&str, String)], wrapper: &[&str]) -> Node {
        let dir = temp_dir(&format!("node-{name}"));
        let mut vars = base_env(&dir);
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(gateway_bin());
                c
            }
            None => Command::new(gateway_bin()),
        };
        let mut child = cmd
            .arg("serve")
            .env_remove("RUST_LOG")
            .envs(vars)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the gateway binary starts");
        let pid = child.id();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let log_path = dir.join("stdout.log");
        // A plain thread drains stdout into a file (the child never blocks on a full pipe) and
        // hands over the address once.
        std::thread::spawn(move || {
            let mut log = std::fs::File::create(log_path).unwrap();
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                if let Some(url) = line.trim().strip_prefix("Landing page") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().trim_end_matches('/').to_owned());
                    }
                }
            }
        });
        let mut node = Node {
            name: name.to_owned(),
            base: String::new(),
            ws_base: String::new(),
            pid,
            child: std::sync::Mutex::new(Some(child)),
            dir,
        };
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(base)) => {
                node.ws_base = base.replacen("http://", "ws://", 1);
                node.base = base;
            }
            _ => panic!(
                "node {name} did not print its address; its logs:\n{}",
                node.logs(60)
            ),
        }
        node
    }

    /// SIGKILL: no close frames, no cleanup, as if the machine died.
    pub fn kill9(&self) {
        let taken = self.child.lock().unwrap().take();
        if let Some(mut c) = taken {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(
            self.child.lock().unwrap().as_mut().map(|c| c.try_wait()),
            Some(Ok(None))
        )
    }

    pub fn logs(&self, lines: usize) -> String {
        format!(
            "--- node {} stdout\n{}\n--- node {} stderr\n{}",
            self.name,
            tail(&self.dir.join("stdout.log"), lines),
            self.name,
            tail(&self.dir.join("stderr.log"), lines)
        )
    }

    /// GET a path; returns the status code (0 when the node does not answer).
    pub async fn status(&self, path: &str) -> u16 {
        match http()
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(3))
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Waits until `/readyz` answers `want`; returns how long that took.
    pub async fn wait_ready(&self, want: u16, within: Duration) -> Duration {
        let start = std::time::Instant::now();
        loop {
            let s = self.status("/readyz").await;
            if s == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "node {} /readyz stayed {s}, wanted {want}\n{}",
                self.name,
                self.logs(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Logs in over HTTP and returns the `Cookie` header value for the session.
    pub async fn login(&self, username: &str) -> String {
        let res = http()
            .post(format!("{}/api/login", self.base))
            .header("origin", &self.base)
            .json(&serde_json::json!({"username": username, "password": PASSWORD}))
            .send()
            .await
            .expect("login request");
        assert_eq!(
            res.status().as_u16(),
            200,
            "login {username} on {}",
            self.name
        );
        let set = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.contains("session"))
            .expect("a session cookie")
            .to_owned();
        set.split(';').next().unwrap().trim().to_owned()
    }

    /// GET a JSON API path with a cookie.
    pub async fn get_json(&self, path: &str, cookie: &str) -> serde_json::Value {
        let res = http()
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .expect("api request");
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.expect("JSON")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs(40));
        }
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh HTTP client (a pooled one would outlive the test's runtime).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}
