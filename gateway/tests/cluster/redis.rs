//! Real redis-server processes for the cluster tests: a standalone server on a free port, and a
//! Sentinel topology (a primary, replicas, three sentinels) started from generated config files.
//! Never a mock: these are Debian's `redis-server` binary (`--sentinel` runs the same binary as
//! a sentinel, which is all Debian's `redis-sentinel` package adds).
//!
//! Also a minimal RESP client, so tests can inspect what the gateways stored (`SCAN`, `TYPE`,
//! reads of every type) and drive the topology (`SENTINEL`, `INFO`) without another crate.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A free TCP port on loopback (bound and released; the tests run one at a time, see `SERIAL`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A fresh temporary directory, removed by its owner on drop.
pub fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tsunagu-cluster-{what}-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub fn redis_server_bin() -> &'static str {
    "redis-server"
}

/// One redis-server process. Killed (SIGKILL) on drop.
pub struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    owns_dir: bool,
}

impl RedisServer {
    /// A server without persistence: `--save "" --appendonly no`.
    pub async fn start() -> RedisServer {
        Self::start_with(&["--save", "", "--appendonly", "no"]).await
    }

    /// A server whose data survives a crash: every write is fsynced to the append-only file
    /// before it is acknowledged (what docs/operations.md recommends for a single Redis).
    pub async fn start_durable() -> RedisServer {
        Self::start_with(&[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .await
    }

    pub async fn start_with(extra: &[&str]) -> RedisServer {
        let dir = temp_dir("redis");
        let port = free_port();
        Self::spawn_in(
            dir,
            port,
            extra.iter().map(|s| s.to_string()).collect(),
            true,
        )
        .await
    }

    async fn spawn_in(dir: PathBuf, port: u16, args: Vec<String>, owns_dir: bool) -> RedisServer {
        let mut s = RedisServer {
            port,
            dir,
            args,
            child: None,
            owns_dir,
        };
        s.spawn().await;
        s
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(redis_server_bin());
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", &self.dir.display().to_string()])
            .args([
                "--logfile",
                &self.dir.join("redis.log").display().to_string(),
            ])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "redis-server already running");
        let child = self
            .command()
            .spawn()
            .expect("redis-server starts (apt-get install redis-server)");
        self.child = Some(child);
        wait_for_ping(self.port, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("redis-server on {} did not answer: {e:#}", self.port));
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A crash: SIGKILL, then wait until the port is closed.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server (SIGKILL: with `appendfsync always` nothing acknowledged is lost).
    pub fn stop(&mut self) {
        self.kill9();
    }

    /// Starts it again on the same port, with the same directory (so an append-only file, if
    /// any, is loaded again).
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    pub async fn client(&self) -> Resp {
        Resp::connect(self.port).await.expect("connect to redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until a server on `port` answers PING with PONG.
pub async fn wait_for_ping(port: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(mut c) = Resp::connect(port).await {
            if let Ok(v) = c.cmd(&["PING"]).await {
                if v.as_str() == Some("PONG") {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("no PONG on port {port} within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A reply in the Redis serialization protocol (RESP2).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Simple(s) => Some(s),
            Value::Bulk(Some(b)) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn items(&self) -> &[Value] {
        match self {
            Value::Array(Some(v)) => v,
            _ => &[],
        }
    }

    /// Every byte string inside this reply (nested arrays flattened).
    pub fn bytes(&self, out: &mut Vec<Vec<u8>>) {
        match self {
            Value::Simple(s) | Value::Error(s) => out.push(s.as_bytes().to_vec()),
            Value::Int(i) => out.push(i.to_string().into_bytes()),
            Value::Bulk(Some(b)) => out.push(b.clone()),
            Value::Bulk(None) | Value::Array(None) => {}
            Value::Array(Some(v)) => v.iter().for_each(|x| x.bytes(out)),
        }
    }
}

/// A minimal RESP client over one TCP connection.
pub struct Resp {
    io: BufReader<TcpStream>,
}

impl Resp {
    pub async fn connect(port: u16) -> anyhow::Result<Resp> {
        let s = tokio::time::timeout(
            Duration::from_secs(2),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .context("connect timed out")??;
        Ok(Resp {
            io: BufReader::new(s),
        })
    }

    pub async fn cmd(&mut self, args: &[&str]) -> anyhow::Result<Value> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        self.io.get_mut().write_all(&buf).await?;
        tokio::time::timeout(Duration::from_secs(10), self.read())
            .await
            .context("redis reply timed out")?
    }

    /// Like `cmd`, but an error reply is an `Err`.
    pub async fn ok(&mut self, args: &[&str]) -> anyhow::Result<Value> {
        match self.cmd(args).await? {
            Value::Error(e) => bail!("{args:?}: {e}"),
            v => Ok(v),
        }
    }

    fn read(
        &mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Value>> + Send + '_>>
    {
        Box::pin(async move {
            let mut line = String::new();
            if self.io.read_line(&mut line).await? == 0 {
                bail!("connection closed");
            }
            let line = line.trim_end_matches("\r\n");
            let (kind, rest) = line.split_at(1);
            Ok(match kind {
                "+" => Value::Simple(rest.to_owned()),
                "-" => Value::Error(rest.to_owned()),
                ":" => Value::Int(rest.parse()?),
                "$" => {
                    let n: i64 = rest.parse()?;
                    if n < 0 {
                        Value::Bulk(None)
                    } else {
                        let mut b = vec![0u8; n as usize + 2];
                        self.io.read_exact(&mut b).await?;
                        b.truncate(n as usize);
                        Value::Bulk(Some(b))
                    }
                }
                "*" => {
                    let n: i64 = rest.parse()?;
                    if n < 0 {
                        Value::Array(None)
                    } else {
                        let mut v = Vec::with_capacity(n as usize);
                        for _ in 0..n {
                            v.push(self.read().await?);
                        }
                        Value::Array(Some(v))
                    }
                }
                other => bail!("unexpected RESP type {other:?} in {line:?}"),
            })
        })
    }

    /// Every key matching `pattern`, by `SCAN` (never `KEYS`).
    pub async fn scan(&mut self, pattern: &str) -> anyhow::Result<Vec<String>> {
        let mut cursor = "0".to_owned();
        let mut keys = Vec::new();
        loop {
            let r = self
                .ok(&["SCAN", &cursor, "MATCH", pattern, "COUNT", "1000"])
                .await?;
            let items = r.items();
            cursor = items
                .first()
                .and_then(|c| c.as_str())
                .context("SCAN cursor")?
                .to_owned();
            for k in items.get(1).map(|v| v.items()).unwrap_or(&[]) {
                keys.push(k.as_str().context("key is UTF-8")?.to_owned());
            }
            if cursor == "0" {
                return Ok(keys);
            }
        }
    }

    /// The whole content of a key, whatever its type, as byte strings.
    pub async fn contents(&mut self, key: &str) -> anyhow::Result<Vec<Vec<u8>>> {
        let ty = self.ok(&["TYPE", key]).await?;
        let reply = match ty.as_str().unwrap_or("none") {
            "string" => self.ok(&["GET", key]).await?,
            "hash" => self.ok(&["HGETALL", key]).await?,
            "list" => self.ok(&["LRANGE", key, "0", "-1"]).await?,
            "set" => self.ok(&["SMEMBERS", key]).await?,
            "zset" => self.ok(&["ZRANGE", key, "0", "-1", "WITHSCORES"]).await?,
            "stream" => self.ok(&["XRANGE", key, "-", "+"]).await?,
            "none" => Value::Array(None),
            other => bail!("key {key} has a type this test cannot read: {other}"),
        };
        let mut out = Vec::new();
        reply.bytes(&mut out);
        Ok(out)
    }

    /// `INFO replication` as key/value pairs.
    pub async fn info_replication(&mut self) -> anyhow::Result<Vec<(String, String)>> {
        let r = self.ok(&["INFO", "replication"]).await?;
        Ok(r.as_str()
            .unwrap_or("")
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect())
    }
}

/// A primary, `replicas` replicas and three sentinels (quorum 2), all on free ports, with a
/// short `down-after-milliseconds` and `failover-timeout` so a failover takes a few seconds.
pub struct Sentinels {
    pub master_name: String,
    pub primary: RedisServer,
    pub replicas: Vec<RedisServer>,
    pub sentinels: Vec<Sentinel>,
    pub dir: PathBuf,
}

pub struct Sentinel {
    pub port: u16,
    child: Child,
    conf: PathBuf,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const DOWN_AFTER_MS: u64 = 1000;
pub const FAILOVER_TIMEOUT_MS: u64 = 5000;

impl Sentinels {
    pub async fn start(replicas: usize) -> Sentinels {
        Self::start_on(replicas, "127.0.0.1").await
    }

    /// Like [`Sentinels::start`], every server and sentinel also listening on `host` (an
    /// address of this machine) and known to the others by it: what the sentinels tell a node
    /// in a network namespace must be an address it can reach.
    pub async fn start_on(replicas: usize, host: &str) -> Sentinels {
        let dir = temp_dir("sentinel");
        let master_name = "mymaster".to_owned();
        let mut base = vec!["--save", "", "--appendonly", "no"];
        if host != "127.0.0.1" {
            base.extend(["--bind", "127.0.0.1", host, "--replica-announce-ip", host]);
        }
        let node = |i: usize| {
            let d = dir.join(format!("redis-{i}"));
            std::fs::create_dir_all(&d).unwrap();
            d
        };
        let primary = RedisServer::spawn_in(
            node(0),
            free_port(),
            base.iter().map(|s| s.to_string()).collect(),
            false,
        )
        .await;
        let mut reps = Vec::new();
        for i in 0..replicas {
            let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
            args.extend(["--replicaof".into(), host.into(), primary.port.to_string()]);
            reps.push(RedisServer::spawn_in(node(i + 1), free_port(), args, false).await);
        }
        // Wait until every replica is in sync before the sentinels look.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let info = primary.client().await.info_replication().await.unwrap();
            let online = info
                .iter()
                .filter(|(k, v)| k.starts_with("slave") && v.contains("state=online"))
                .count();
            if online == replicas {
                break;
            }
            assert!(Instant::now() < deadline, "replicas not online: {info:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind {bind}\nprotected-mode no\ndaemonize no\n\
                     dir {dir}\nlogfile {log}\n{announce}\
                     sentinel monitor {m} {host} {p} 2\n\
                     sentinel down-after-milliseconds {m} {DOWN_AFTER_MS}\n\
                     sentinel failover-timeout {m} {FAILOVER_TIMEOUT_MS}\n\
                     sentinel parallel-syncs {m} 1\n",
                    dir = dir.display(),
                    log = dir.join(format!("sentinel-{i}.log")).display(),
                    m = master_name,
                    p = primary.port,
                    bind = if host == "127.0.0.1" {
                        host.to_owned()
                    } else {
                        format!("127.0.0.1 {host}")
                    },
                    announce = if host == "127.0.0.1" {
                        String::new()
                    } else {
                        format!("sentinel announce-ip {host}\n")
                    },
                ),
            )
            .unwrap();
            let child = Command::new(redis_server_bin())
                .arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server --sentinel starts");
            sentinels.push(Sentinel { port, child, conf });
            wait_for_ping(port, Duration::from_secs(10))
                .await
                .expect("sentinel answers");
        }
        let s = Sentinels {
            master_name,
            primary,
            replicas: reps,
            sentinels,
            dir,
        };
        // Sentinels find each other through the primary's hello channel (every 2 s); wait until
        // each one knows the other two and every replica, so a failover can be authorised.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut ready = true;
            for st in &s.sentinels {
                let m = s.sentinel_master(st.port).await.unwrap_or_default();
                let get = |k: &str| m.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone());
                ready &= get("num-other-sentinels").as_deref() == Some("2")
                    && get("num-slaves").as_deref() == Some(&replicas.to_string());
            }
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sentinels did not see each other: {}",
                s.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/mymaster`
    pub fn url(&self) -> String {
        self.url_on("127.0.0.1")
    }

    /// The same with the sentinels at `host` (see [`Sentinels::start_on`]).
    pub fn url_on(&self, host: &str) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("{host}:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), self.master_name)
    }

    /// `SENTINEL MASTER <name>` as key/value pairs.
    pub async fn sentinel_master(&self, port: u16) -> anyhow::Result<Vec<(String, String)>> {
        let mut c = Resp::connect(port).await?;
        let r = c.ok(&["SENTINEL", "MASTER", &self.master_name]).await?;
        let items = r.items();
        Ok(items
            .chunks(2)
            .filter_map(|kv| Some((kv[0].as_str()?.to_owned(), kv.get(1)?.as_str()?.to_owned())))
            .collect())
    }

    /// The primary's port as the first sentinel that answers sees it.
    pub async fn primary_port(&self) -> anyhow::Result<u16> {
        for s in &self.sentinels {
            if let Ok(mut c) = Resp::connect(s.port).await {
                if let Ok(r) = c
                    .ok(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.master_name])
                    .await
                {
                    if let Some(p) = r.items().get(1).and_then(|p| p.as_str()) {
                        return Ok(p.parse()?);
                    }
                }
            }
        }
        bail!("no sentinel answered")
    }

    /// Kills the primary `old` (SIGKILL) and waits up to 30 s for the sentinels to promote
    /// another: the new primary's port.
    pub async fn kill_primary(&mut self, old: u16) -> u16 {
        self.primary.kill9();
        self.wait_for_promotion(old, Duration::from_secs(30))
            .await
            .unwrap()
    }

    /// Waits until every sentinel names a primary other than `old` and that server says it is
    /// a master. Returns the new primary's port.
    pub async fn wait_for_promotion(&self, old: u16, within: Duration) -> anyhow::Result<u16> {
        let deadline = Instant::now() + within;
        loop {
            let mut ports = Vec::new();
            for s in &self.sentinels {
                if let Ok(mut c) = Resp::connect(s.port).await {
                    if let Ok(r) = c
                        .ok(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.master_name])
                        .await
                    {
                        ports.push(r.items().get(1).and_then(|p| p.as_str()).map(str::to_owned));
                    }
                }
            }
            let first = ports.first().cloned().flatten();
            if ports.len() == self.sentinels.len()
                && ports.iter().all(|p| *p == first)
                && first.as_deref() != Some(&old.to_string())
            {
                let port: u16 = first.context("port")?.parse()?;
                let role = Resp::connect(port)
                    .await?
                    .info_replication()
                    .await?
                    .into_iter()
                    .find(|(k, _)| k == "role")
                    .map(|(_, v)| v);
                if role.as_deref() == Some("master") {
                    return Ok(port);
                }
            }
            if Instant::now() > deadline {
                bail!("no promotion within {within:?}: {ports:?}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.sentinels.iter().enumerate() {
            out.push_str(&format!(
                "--- sentinel {i} ({}, {})\n",
                s.port,
                s.conf.display()
            ));
            out.push_str(&tail(&self.dir.join(format!("sentinel-{i}.log")), 30));
            out.push('\n');
        }
        out
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        self.sentinels.clear();
        self.replicas.clear();
        self.primary.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
