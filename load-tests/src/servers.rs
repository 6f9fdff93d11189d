//! The servers a suite compares: the gateway (memory store, or Redis mode with N nodes), the
//! peers in `load-tests/peers/` (three on one process, and Socket.IO on N processes sharing a
//! Redis), and the raw relay (the floor). Each is started as its own process (or processes),
//! pinned to the server core.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::cluster::{Cluster, Layout, Member, Started};
use crate::gateway::{cpu_of, rss_of, Gateway};
use crate::net::Framing;

#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Gateway,
    /// Scenario (f): the gateway in Redis mode, N nodes sharing one redis-server.
    #[serde(rename = "gateway-redis")]
    GatewayRedis,
    /// The gateway (memory store) from another build, `--baseline <binary>`: a before/after
    /// comparison of two builds in one interleaved run.
    #[serde(rename = "gateway-baseline")]
    GatewayBaseline,
    Bun,
    Ws,
    #[serde(rename = "socketio")]
    SocketIo,
    /// The Socket.IO peer on N Node.js processes sharing one redis-server (its Redis adapter,
    /// the queue and operators' capacity in Redis): gateway-redis's peer.
    #[serde(rename = "socketio-redis")]
    SocketIoRedis,
    Relay,
}

impl Target {
    pub const ALL: [Target; 8] = [
        Target::Gateway,
        Target::GatewayRedis,
        Target::GatewayBaseline,
        Target::Bun,
        Target::Ws,
        Target::SocketIo,
        Target::SocketIoRedis,
        Target::Relay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Gateway => "gateway",
            Target::GatewayRedis => "gateway-redis",
            Target::GatewayBaseline => "gateway-baseline",
            Target::Bun => "bun",
            Target::Ws => "ws",
            Target::SocketIo => "socketio",
            Target::SocketIoRedis => "socketio-redis",
            Target::Relay => "relay",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Target> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .with_context(|| {
                format!("unknown target {s} (gateway, gateway-redis, gateway-baseline, bun, ws, socketio, socketio-redis, relay)")
            })
    }

    pub fn framing(self) -> Framing {
        if matches!(self, Target::SocketIo | Target::SocketIoRedis) {
            Framing::SocketIo
        } else {
            Framing::Plain
        }
    }

    /// Several nodes sharing a redis-server of the tool's own (needs `redis-server` on PATH).
    pub fn uses_redis(self) -> bool {
        matches!(self, Target::GatewayRedis | Target::SocketIoRedis)
    }

    /// The target this one is compared with in the report's ratios: several nodes against
    /// several nodes, one process against the gateway on one.
    pub fn reference(self) -> Target {
        if self.uses_redis() {
            Target::GatewayRedis
        } else {
            Target::Gateway
        }
    }

    /// This project's gateway, in either store mode (operators sign in; resume works).
    pub fn is_gateway(self) -> bool {
        matches!(
            self,
            Target::Gateway | Target::GatewayRedis | Target::GatewayBaseline
        )
    }

    /// Whether the target runs the queue (offers, accept); the raw relay only forwards.
    pub fn has_queue(self) -> bool {
        self != Target::Relay
    }
}

/// Where to find what the servers are started from.
#[derive(Clone)]
pub struct Bins {
    pub gateway: PathBuf,
    /// The `gateway-baseline` target's binary (`--baseline`).
    pub baseline: Option<PathBuf>,
    pub peers: PathBuf,
    pub server_core: Option<usize>,
    /// Nodes of the `gateway-redis` and `socketio-redis` targets.
    pub redis_nodes: usize,
}

pub struct Server {
    pub target: Target,
    /// The (first) node's base URL; clients ask [`Server::visitor_base`] and
    /// [`Server::operator_base`], which spread them over a cluster's nodes.
    pub base: String,
    pub pid: u32,
    inner: Inner,
}

enum Inner {
    Gateway(Gateway),
    Cluster(Cluster),
    Process(Child),
}

/// Settings of the gateway that every suite scenario needs: the per-connection message
/// allowance lifted (a simulated person writes far faster than a real one), offers made at once.
fn gateway_env<'a>(extra: &[(&'a str, String)]) -> Vec<(&'a str, String)> {
    let mut v = vec![
        (
            "TSUNAGU_LIMITS__MESSAGES_PER_MINUTE",
            "100000000".to_owned(),
        ),
        ("TSUNAGU_LIMITS__MESSAGE_BURST", "1000000".to_owned()),
        ("TSUNAGU_CONVERSATION__AUTO_OFFER", "true".to_owned()),
    ];
    v.extend_from_slice(extra);
    v
}

impl Server {
    /// Starts `target` with `operators` accounts of `capacity` (the gateway needs accounts; the
    /// peers take any operator).
    pub async fn start(
        target: Target,
        bins: &Bins,
        operators: usize,
        capacity: u32,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        let env = gateway_env(extra);
        let (base, pid, inner) = match target {
            Target::GatewayRedis => {
                let c = Cluster::start(
                    &bins.gateway,
                    bins.redis_nodes,
                    operators,
                    capacity,
                    bins.server_core,
                    &env,
                )
                .await?;
                (c.base(0).to_owned(), c.first_pid(), Inner::Cluster(c))
            }
            Target::Gateway | Target::GatewayBaseline => {
                let binary = match target {
                    Target::GatewayBaseline => bins
                        .baseline
                        .as_ref()
                        .context("target gateway-baseline needs --baseline <gateway binary>")?,
                    _ => &bins.gateway,
                };
                let gw = Gateway::start_with(binary, operators, capacity, bins.server_core, &env)
                    .await?;
                (gw.base.clone(), gw.pid, Inner::Gateway(gw))
            }
            Target::SocketIoRedis => {
                let c = Cluster::start_nodes(bins.redis_nodes, bins.server_core, |k, url| {
                    let env = [("REDIS_URL", url), ("PEER_NODE", k.to_string())];
                    async move {
                        let (pid, base, child) = spawn(
                            Path::new("node"),
                            &["socketio-redis-server.js".into()],
                            bins,
                            &env,
                        )
                        .await?;
                        Ok(Started {
                            base,
                            pid,
                            member: Member::Peer(child),
                        })
                    }
                })
                .await?;
                (c.base(0).to_owned(), c.first_pid(), Inner::Cluster(c))
            }
            Target::Ws | Target::SocketIo | Target::Bun | Target::Relay => {
                let (pid, base, child) = Self::start_peer(target, bins).await?;
                (base, pid, Inner::Process(child))
            }
        };
        Ok(Server {
            target,
            base,
            pid,
            inner,
        })
    }

    /// Starts one of the peer servers on one process: its pid, address and process.
    async fn start_peer(target: Target, bins: &Bins) -> anyhow::Result<(u32, String, Child)> {
        let (program, args): (PathBuf, Vec<String>) = match target {
            Target::Ws => ("node".into(), vec!["ws-server.js".into()]),
            Target::SocketIo => ("node".into(), vec!["socketio-server.js".into()]),
            Target::Bun => (
                bins.peers.join("node_modules/bun/bin/bun.exe"),
                vec!["bun-server.js".into()],
            ),
            Target::Relay => (std::env::current_exe()?, vec!["relay".into()]),
            Target::Gateway
            | Target::GatewayRedis
            | Target::GatewayBaseline
            | Target::SocketIoRedis => unreachable!(),
        };
        spawn(&program, &args, bins, &[]).await
    }

    /// Where clients connect (a cluster's nodes as its layout says): (c) and (d) spread people
    /// over the nodes; (b) and (e) put them all on one node and their operators on the others.
    pub fn placed(mut self, layout: Layout) -> Server {
        if let Inner::Cluster(c) = &mut self.inner {
            c.layout = layout;
        }
        self
    }

    /// The base URL person number `i` connects to (now: a killed node's people move).
    pub fn visitor_base(&self, i: usize) -> String {
        match &self.inner {
            Inner::Cluster(c) => c.base(c.visitor_node(i)).to_owned(),
            _ => self.base.clone(),
        }
    }

    /// The base URL operator number `i` signs in and connects to.
    pub fn operator_base(&self, i: usize) -> String {
        match &self.inner {
            Inner::Cluster(c) => c.base(c.operator_node(i)).to_owned(),
            _ => self.base.clone(),
        }
    }

    /// The node person number `i` connects to now (0 unless a cluster).
    pub fn visitor_node(&self, i: usize) -> usize {
        match &self.inner {
            Inner::Cluster(c) => c.visitor_node(i),
            _ => 0,
        }
    }

    /// Nodes (1 unless a cluster).
    pub fn nodes(&self) -> usize {
        match &self.inner {
            Inner::Cluster(c) => c.len(),
            _ => 1,
        }
    }

    /// Kills node `k` of a cluster with SIGKILL; its clients then reconnect to the others.
    pub fn kill_node(&self, k: usize) -> anyhow::Result<()> {
        match &self.inner {
            Inner::Cluster(c) => c.kill9(k),
            _ => bail!("only a target of several nodes has nodes to kill"),
        }
    }

    /// CPU time so far: of the process, or of every node and redis-server of a cluster.
    pub fn cpu(&self) -> Duration {
        match &self.inner {
            Inner::Cluster(c) => c.cpu(),
            _ => cpu_of(self.pid),
        }
    }

    /// Resident memory: of the process, or of the live nodes and redis-server of a cluster.
    pub fn rss(&self) -> u64 {
        match &self.inner {
            Inner::Cluster(c) => c.rss(),
            _ => rss_of(self.pid),
        }
    }

    /// Stops the server (SIGKILL) and cleans up after it.
    pub async fn stop(self) {
        match self.inner {
            Inner::Gateway(gw) => gw.stop().await,
            Inner::Cluster(c) => c.stop().await,
            Inner::Process(mut c) => {
                let _ = c.kill().await;
            }
        }
    }
}

/// Starts `program` with `args` in the peers folder (pinned to the server core, with `env` on
/// top of this process's): its pid, the address it prints, and the process.
async fn spawn(
    program: &Path,
    args: &[String],
    bins: &Bins,
    env: &[(&str, String)],
) -> anyhow::Result<(u32, String, Child)> {
    let mut cmd = match bins.server_core {
        Some(c) => {
            let mut t = Command::new("taskset");
            t.args(["-c", &c.to_string()]).arg(program);
            t
        }
        None => Command::new(program),
    };
    let mut child = cmd
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(&bins.peers)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id().context("server pid")?;
    let base = read_address(&mut child).await?;
    Ok((pid, base, child))
}

/// Reads the child's stdout until it prints `listening http://…`, then keeps draining it.
async fn read_address(child: &mut Child) -> anyhow::Result<String> {
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let base = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.trim().strip_prefix("listening ") {
                return Ok::<_, anyhow::Error>(url.trim().to_owned());
            }
        }
        bail!("the server exited before printing its address")
    })
    .await
    .context("the server did not start in time")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(base)
}

/// The peers folder of this source tree (overridable with `--peers`).
pub fn default_peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_by_name() {
        for t in Target::ALL {
            assert_eq!(Target::parse(t.name()).ok(), Some(t));
        }
        assert!(Target::SocketIoRedis.uses_redis());
        assert!(!Target::SocketIoRedis.is_gateway());
    }
}
