//! `exhaust`: the gateway's memory under resource-exhaustion floods (issue 17, items 1 and 2),
//! with its default limits (only the connection caps per address are set back to their
//! defaults, which the other scenarios lift):
//! - `pings`: sockets on `/ws/visitor` that send Ping frames as fast as they can, before
//!   `hello`, and never read;
//! - `idle`: TCP connections that are opened and never send a byte.
//!
//! It prints the gateway's RSS before, at its peak and at the end, how many connections the
//! gateway had closed by the end, and how often `/healthz` answered during the flood (asked
//! every 0.5 s from 127.0.0.254, an address of its own, as a load balancer would). With
//! `--addresses`, the connections come from that many loopback addresses (past the
//! per-address cap); with `--gateway-nofile`, the gateway starts with that open-files limit
//! (to reach it with a few thousand connections).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::gateway::{rss_of, Gateway};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Kind {
    Pings,
    Idle,
}

#[derive(clap::Args)]
pub struct ExhaustArgs {
    #[arg(long, value_enum)]
    kind: Kind,
    /// Connections opened at once.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Loopback addresses the connections come from (127.0.0.1, .2, …), in turn.
    #[arg(long, default_value_t = 1)]
    addresses: u8,
    /// The gateway's open-files limit (default: this process's).
    #[arg(long)]
    gateway_nofile: Option<u64>,
    /// How long the flood lasts, in seconds.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// The gateway binary (default: the one next to this one).
    #[arg(long)]
    gateway: Option<PathBuf>,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A masked client Ping frame with a 125-byte payload, the largest a control frame may carry.
fn ping() -> Vec<u8> {
    const MASK: [u8; 4] = [1, 2, 3, 4];
    let mut out = vec![0x89, 0x80 | 125];
    out.extend_from_slice(&MASK);
    out.extend((0..125).map(|i| b'p' ^ MASK[i & 3]));
    out
}

/// A connection to `addr` from the loopback address 127.0.0.`from`.
async fn connect(addr: &str, from: u8, small_buffer: bool) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if small_buffer {
        socket.set_recv_buffer_size(4096)?;
    }
    socket.bind(SocketAddr::new(IpAddr::from([127, 0, 0, from]), 0))?;
    Ok(socket.connect(addr.parse()?).await?)
}

/// Opens a visitor websocket (the handshake only) with a small receive buffer, which is then
/// never read.
async fn upgraded(addr: &str, from: u8) -> anyhow::Result<TcpStream> {
    let mut tcp = connect(addr, from, true).await?;
    let upgrade = format!(
        "GET /ws/visitor HTTP/1.1\r\nhost: {addr}\r\norigin: http://{addr}\r\nconnection: upgrade\r\n\
         upgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(upgrade.as_bytes()).await?;
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await?;
    anyhow::ensure!(&head == b"HTTP/1.1 101", "not upgraded");
    // The rest of the 101's head is left unread: nothing is read from here on.
    Ok(tcp)
}

/// Whether `/healthz` answers 200 within 2 s on a new connection.
async fn healthy(addr: &str) -> bool {
    tokio::time::timeout(Duration::from_secs(2), async {
        let mut tcp = connect(addr, 254, false).await.ok()?;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut status = [0u8; 12];
        tcp.read_exact(&mut status).await.ok()?;
        Some(&status == b"HTTP/1.1 200")
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(false)
}

pub async fn exhaust(args: ExhaustArgs) -> anyhow::Result<()> {
    let bin = args.gateway.clone().unwrap_or_else(crate::default_gateway);
    anyhow::ensure!(bin.exists(), "no gateway binary at {}", bin.display());
    let defaults = [
        ("TSUNAGU_LIMITS__CONNECTIONS_PER_ADDRESS", "100".to_owned()),
        (
            "TSUNAGU_LIMITS__TCP_CONNECTIONS_PER_ADDRESS",
            "300".to_owned(),
        ),
    ];
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if let Some(n) = args.gateway_nofile {
        // Inherited by the gateway; this process's own limit is put back once it started.
        let lowered = rustix::process::Rlimit {
            current: Some(n),
            maximum: nofile.maximum,
        };
        rustix::process::setrlimit(rustix::process::Resource::Nofile, lowered)?;
    }
    let started = Gateway::start_with(&bin, 1, 1, None, &defaults).await;
    rustix::process::setrlimit(rustix::process::Resource::Nofile, nofile)?;
    let gateway = started?;
    let addr = gateway.base.trim_start_matches("http://").to_owned();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_of(gateway.pid);
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for i in 0..args.connections {
        let from = 1 + (i % usize::from(args.addresses.clamp(1, 250))) as u8;
        let addr = addr.clone();
        let kind = args.kind;
        tasks.push(tokio::spawn(async move {
            // Ok(true): the gateway closed the connection before the end.
            match kind {
                Kind::Pings => {
                    let Ok(tcp) = upgraded(&addr, from).await else {
                        return Ok::<_, anyhow::Error>(true);
                    };
                    let (_unread, mut write) = tcp.into_split();
                    let pings: Vec<u8> = std::iter::repeat_n(ping(), 64).flatten().collect();
                    let flood = async { while write.write_all(&pings).await.is_ok() {} };
                    Ok(tokio::time::timeout_at(until.into(), flood).await.is_ok())
                }
                Kind::Idle => {
                    let Ok(mut tcp) = connect(&addr, from, false).await else {
                        return Ok(true);
                    };
                    let mut buf = [0u8; 512];
                    // Anything the gateway sends (a refusal) is read; the end is its close.
                    let wait = async {
                        while let Ok(n) = tcp.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                        }
                    };
                    Ok(tokio::time::timeout_at(until.into(), wait).await.is_ok())
                }
            }
        }));
    }
    let mut peak = before;
    let mut health = (0, 0);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(rss_of(gateway.pid));
        health.1 += 1;
        if healthy(&addr).await {
            health.0 += 1;
        }
    }
    let mut closed = 0;
    for task in tasks {
        if task.await?? {
            closed += 1;
        }
    }
    let after = rss_of(gateway.pid);
    peak = peak.max(after);
    println!(
        "exhaust {:?}: {} connections for {} s: RSS before {:.1} MiB, peak {:.1} MiB, end {:.1} MiB; \
         {closed} of {} closed by the gateway; /healthz answered {} of {} checks",
        args.kind,
        args.connections,
        args.seconds,
        mib(before),
        mib(peak),
        mib(after),
        args.connections,
        health.0,
        health.1
    );
    gateway.stop().await;
    Ok(())
}
