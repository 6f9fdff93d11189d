//! Several nodes sharing one Redis: a real `redis-server` of the tool's own (from PATH, a free
//! port on 127.0.0.1, no persistence) and N processes using it, every process pinned to the
//! server core like a single server. Scenario (f): the gateway in Redis mode (`gateway-redis`,
//! `TSUNAGU_STORE__URL`); its peer for several nodes (`socketio-redis`: Node.js processes with
//! Socket.IO's Redis adapter). Clients are spread over the nodes' base URLs (see [`Layout`]); a
//! node can be killed with SIGKILL under load (the storm), after which new connections go to
//! the surviving nodes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::gateway::{cpu_of, rss_of, Gateway};

/// Where a scenario's clients connect, node by node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Layout {
    /// People round-robin over every node; operators over every node but the first (the one the
    /// storm kills), so that a killed node's clients are people who resume elsewhere.
    #[default]
    Spread,
    /// Every person on the first node, operators on the others: every message crosses nodes
    /// (store write, then pub/sub to the operator's node).
    Apart,
}

/// Is `redis-server` on PATH? (A clear message instead of a failed spawn in every scenario.)
pub fn redis_server_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

pub fn require_redis_server() -> anyhow::Result<PathBuf> {
    redis_server_on_path().context(
        "targets gateway-redis and socketio-redis need `redis-server` on PATH \
         (apt-get install redis-server), or leave them out of --targets",
    )
}

/// One `redis-server` without persistence, killed (SIGKILL) when stopped or dropped.
pub struct Redis {
    pub port: u16,
    pub pid: u32,
    child: Child,
    dir: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Redis {
    pub async fn start(core: Option<usize>) -> anyhow::Result<Redis> {
        let bin = require_redis_server()?;
        // A free port is bound and released before redis-server takes it: another process may
        // take it in between, so try a few.
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(&bin, core).await {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    async fn try_start(bin: &Path, core: Option<usize>) -> anyhow::Result<Redis> {
        let dir = std::env::temp_dir().join(format!("tsunagu-load-redis-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let mut cmd = match core {
            Some(c) => {
                let mut t = Command::new("taskset");
                t.args(["-c", &c.to_string()]).arg(bin);
                t
            }
            None => Command::new(bin),
        };
        let child = cmd
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("redis-server pid")?;
        let mut r = Redis {
            port,
            pid,
            child,
            dir,
        };
        if let Err(e) = r.wait_ready(Duration::from_secs(10)).await {
            let log = std::fs::read_to_string(r.dir.join("redis.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            r.stop().await;
            bail!("redis-server on port {port} did not answer PING: {e:#}; log: {tail:?}");
        }
        Ok(r)
    }

    async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("redis-server exited ({status})");
            }
            if ping(self.port).await.unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("no PONG within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// PING in the inline protocol; true on `+PONG`.
async fn ping(port: u16) -> anyhow::Result<bool> {
    let mut s = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await??;
    s.write_all(b"PING\r\n").await?;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await??;
    Ok(buf[..n].starts_with(b"+PONG"))
}

/// The process of one node: a gateway, or a peer's process.
pub enum Member {
    Gateway(Gateway),
    Peer(Child),
}

impl Member {
    async fn stop(self) {
        match self {
            Member::Gateway(gw) => gw.stop().await,
            Member::Peer(mut c) => {
                let _ = c.kill().await;
            }
        }
    }
}

/// A started node: its base URL, pid and process.
pub struct Started {
    pub base: String,
    pub pid: u32,
    pub member: Member,
}

/// One node of a cluster.
struct Node {
    base: String,
    pid: u32,
    member: Mutex<Option<Member>>,
    dead: AtomicBool,
    /// CPU time the node had used when it was killed (its /proc entry goes with it).
    cpu_at_death: Mutex<Duration>,
}

/// A `redis-server` and N nodes sharing it.
pub struct Cluster {
    redis: Redis,
    nodes: Vec<Node>,
    pub layout: Layout,
}

impl Cluster {
    /// Starts a fresh redis-server (no state left from an earlier scenario) and `n` gateway
    /// nodes, each with the same operator accounts and the settings in `extra`.
    pub async fn start(
        bin: &Path,
        n: usize,
        operators: usize,
        capacity: u32,
        core: Option<usize>,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Cluster> {
        Self::start_nodes(n, core, |_, url| async move {
            let mut vars: Vec<(&str, String)> = extra.to_vec();
            vars.push(("TSUNAGU_STORE__URL", url));
            let gw = Gateway::start_with(bin, operators, capacity, core, &vars)
                .await
                .context("in Redis mode")?;
            Ok(Started {
                base: gw.base.clone(),
                pid: gw.pid,
                member: Member::Gateway(gw),
            })
        })
        .await
    }

    /// Starts a fresh redis-server and `n` nodes, one after the other: `start(k, redis_url)`
    /// starts node `k`, ready for clients when it returns.
    pub async fn start_nodes<F, Fut>(
        n: usize,
        core: Option<usize>,
        mut start: F,
    ) -> anyhow::Result<Cluster>
    where
        F: FnMut(usize, String) -> Fut,
        Fut: Future<Output = anyhow::Result<Started>>,
    {
        anyhow::ensure!(n >= 2, "several nodes means at least 2 (got {n})");
        let redis = Redis::start(core).await?;
        let mut nodes = Vec::new();
        for k in 0..n {
            let started = match start(k, redis.url()).await {
                Ok(s) => s,
                Err(e) => {
                    let c = Cluster {
                        redis,
                        nodes,
                        layout: Layout::default(),
                    };
                    c.stop().await;
                    return Err(e.context(format!("starting node {k}")));
                }
            };
            nodes.push(Node {
                base: started.base,
                pid: started.pid,
                member: Mutex::new(Some(started.member)),
                dead: AtomicBool::new(false),
                cpu_at_death: Mutex::new(Duration::ZERO),
            });
        }
        Ok(Cluster {
            redis,
            nodes,
            layout: Layout::default(),
        })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn base(&self, node: usize) -> &str {
        &self.nodes[node].base
    }

    pub fn first_pid(&self) -> u32 {
        self.nodes[0].pid
    }

    /// The node person number `i` connects to now.
    pub fn visitor_node(&self, i: usize) -> usize {
        place(self.layout, Role::Visitor, i, &self.alive())
    }

    /// The node operator number `i` connects to now.
    pub fn operator_node(&self, i: usize) -> usize {
        place(self.layout, Role::Operator, i, &self.alive())
    }

    fn alive(&self) -> Vec<bool> {
        self.nodes
            .iter()
            .map(|n| !n.dead.load(Ordering::Relaxed))
            .collect()
    }

    /// Kills node `k` with SIGKILL (no shutdown, no close frames: its sockets are reset by the
    /// kernel). New connections go to the surviving nodes from now on.
    pub fn kill9(&self, k: usize) -> anyhow::Result<()> {
        let node = &self.nodes[k];
        // Marked dead first, so that nobody reconnects to it after its sockets close.
        node.dead.store(true, Ordering::Relaxed);
        if let Ok(mut c) = node.cpu_at_death.lock() {
            *c = cpu_of(node.pid);
        }
        let status = std::process::Command::new("kill")
            .args(["-9", &node.pid.to_string()])
            .status()
            .context("running kill -9")?;
        anyhow::ensure!(status.success(), "kill -9 {} failed", node.pid);
        Ok(())
    }

    /// CPU time (user + system) of every node and of redis-server so far.
    pub fn cpu(&self) -> Duration {
        let nodes: Duration = self
            .nodes
            .iter()
            .map(|n| {
                if n.dead.load(Ordering::Relaxed) {
                    n.cpu_at_death.lock().map(|c| *c).unwrap_or_default()
                } else {
                    cpu_of(n.pid)
                }
            })
            .sum();
        nodes + cpu_of(self.redis.pid)
    }

    /// Resident memory of the live nodes and of redis-server, in bytes.
    pub fn rss(&self) -> u64 {
        let nodes: u64 = self
            .nodes
            .iter()
            .filter(|n| !n.dead.load(Ordering::Relaxed))
            .map(|n| rss_of(n.pid))
            .sum();
        nodes + rss_of(self.redis.pid)
    }

    pub async fn stop(self) {
        for n in self.nodes {
            let member = n.member.lock().ok().and_then(|mut m| m.take());
            if let Some(m) = member {
                m.stop().await;
            }
        }
        self.redis.stop().await;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Visitor,
    Operator,
}

/// Client `i`'s node: its home node under `layout` if alive, else a surviving one (spread by
/// `i`). Operators never have the first node as home.
fn place(layout: Layout, role: Role, i: usize, alive: &[bool]) -> usize {
    let n = alive.len();
    let home = match (role, layout) {
        (Role::Operator, _) => 1 + i % (n - 1),
        (Role::Visitor, Layout::Spread) => i % n,
        (Role::Visitor, Layout::Apart) => 0,
    };
    if alive[home] {
        return home;
    }
    let up: Vec<usize> = (0..n).filter(|k| alive[*k]).collect();
    if up.is_empty() {
        home
    } else {
        up[i % up.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(layout: Layout, alive: &[bool]) -> (Vec<usize>, Vec<usize>) {
        (
            (0..6)
                .map(|i| place(layout, Role::Visitor, i, alive))
                .collect(),
            (0..4)
                .map(|i| place(layout, Role::Operator, i, alive))
                .collect(),
        )
    }

    #[test]
    fn clients_are_placed_by_layout_and_move_off_a_dead_node() {
        let up = [true; 3];
        assert_eq!(
            places(Layout::Spread, &up),
            (vec![0, 1, 2, 0, 1, 2], vec![1, 2, 1, 2])
        );
        assert_eq!(places(Layout::Apart, &up), (vec![0; 6], vec![1, 2, 1, 2]));
        let (people, ops) = places(Layout::Spread, &[false, true, true]);
        assert_eq!(people, vec![1, 1, 2, 2, 1, 2]);
        assert_eq!(ops, vec![1, 2, 1, 2]);
        // Two nodes: operators all on the second.
        assert_eq!(
            places(Layout::Spread, &[true, true]),
            (vec![0, 1, 0, 1, 0, 1], vec![1, 1, 1, 1])
        );
    }
}
