//! Resource exhaustion from outside (issue 17, items 1 and 2): clients that ping and never
//! read, connections that never send a request or send it a byte at a time, and more
//! connections than an address or the process may hold. Each test sets small limits so the
//! condition is reached at once, and bounds its own waiting.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::*;

/// The real binary, started with `env`; killed on drop.
struct Gateway {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    async fn start(env: &[(&str, &str)]) -> Gateway {
        let dir = std::env::temp_dir().join(format!("tsunagu-exhaustion-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("serve")
            .env_remove("RUST_LOG")
            .env("TSUNAGU_SERVER__HOST", "127.0.0.1")
            .env("TSUNAGU_SERVER__PORT", "0")
            .env("TSUNAGU_SERVER__SHUTDOWN_GRACE_MS", "500")
            .env("TSUNAGU_DATABASE__SQLITE_PATH", dir.join("tsunagu.db"))
            .env("TSUNAGU_LOG__FILTER", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the gateway binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        // Drains stdout (the child never blocks on a full pipe) and hands over the address.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.trim().strip_prefix("Landing page") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_owned());
                    }
                }
            }
        });
        let url = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("the gateway printed its address")
            .unwrap();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        Gateway {
            child,
            addr,
            _dir: TempDir(dir),
        }
    }

    /// The process's resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

/// A TCP connection to `addr` from the loopback address `from` (any of 127/8 is this host).
async fn connect_from(addr: SocketAddr, from: IpAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

fn local(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// Everything the server sends until it closes the connection (or `WAIT` passes: then the
/// connection is still open, which the caller's assertion reports).
async fn read_until_closed(tcp: &mut TcpStream) -> Result<String, &'static str> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    match read {
        Ok(()) => Ok(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => Err("still open"),
    }
}

/// Sends a GET for `path` and reads the response (its head is returned; its body, of
/// `content-length` bytes, is read and dropped); the connection stays open.
async fn get(tcp: &mut TcpStream, path: &str) -> String {
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: gateway\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                break;
            }
            head.push(byte[0]);
        }
    })
    .await
    .expect("a response");
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut body))
        .await
        .expect("the body")
        .ok();
    head
}

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [1, 2, 3, 4];
    assert!(payload.len() < 126);
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
    out
}

#[tokio::test]
async fn a_ping_flood_from_a_client_that_never_reads_is_closed_and_the_gateway_stays_small() {
    // Heartbeat 200 ms: a peer that takes nothing is dropped after 400 ms.
    let gateway = Gateway::start(&[("TSUNAGU_SERVER__HEARTBEAT_MS", "200")]).await;
    let addr = gateway.addr;
    // A client whose receive buffer is small and which never reads: the pongs back up.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let upgrade = format!(
        "GET /ws/visitor HTTP/1.1\r\nhost: {addr}\r\norigin: http://{addr}\r\nconnection: upgrade\r\n\
         upgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(upgrade.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    let before = gateway.rss_kib();
    // No hello: the flood starts at once, and nothing is read from here on.
    let (_unread, mut write) = tcp.into_split();
    let pings: Vec<u8> = std::iter::repeat_n(frame(9, &[b'p'; 125]), 64)
        .flatten()
        .collect();
    let mut sent = 0usize;
    let mut peak = before;
    let flooding = tokio::time::timeout(Duration::from_secs(20), async {
        while write.write_all(&pings).await.is_ok() {
            sent += pings.len();
            if sent % (1 << 20) < pings.len() {
                peak = peak.max(gateway.rss_kib());
            }
        }
    })
    .await;
    let after = gateway.rss_kib();
    peak = peak.max(after);
    assert!(
        flooding.is_ok(),
        "the flooding socket is still open after 20 s ({sent} bytes sent, RSS {before} -> {peak} KiB)"
    );
    assert!(
        peak < before + 32 * 1024,
        "RSS grew from {before} KiB to {peak} KiB ({sent} bytes of pings sent)"
    );
    // The gateway still serves.
    let mut other = TcpStream::connect(addr).await.unwrap();
    assert!(get(&mut other, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(|s| s.server.header_read_timeout_ms = 300).await;
    let addr = app.addr();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_until_closed(&mut idle).await, Ok(String::new()));
    // A kept-alive connection that goes quiet after a response is closed too.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    assert!(get(&mut kept, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(read_until_closed(&mut kept).await.is_ok(), "still open");
    app.stop().await;
}

#[tokio::test]
async fn headers_sent_a_byte_at_a_time_are_cut_off_at_the_header_timeout() {
    let app = spawn_app_with(|s| s.server.header_read_timeout_ms = 300).await;
    let mut slow = TcpStream::connect(app.addr()).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: gateway\r\n")
        .await
        .unwrap();
    // One header line every 50 ms, for up to 5 s: never the end of the headers.
    let mut lines = 0;
    while lines < 100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if slow.write_all(b"x-slow: 1\r\n").await.is_err() {
            break;
        }
        lines += 1;
    }
    assert!(lines < 100, "the connection took headers for 5 s");
    let rest = read_until_closed(&mut slow).await;
    assert!(
        rest.as_deref().is_ok_and(|r| !r.contains(" 200 ")),
        "{rest:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn headers_over_the_size_cap_are_refused() {
    let app = spawn_app_with(|s| s.server.max_header_bytes = 16 * 1024).await;
    let mut big = TcpStream::connect(app.addr()).await.unwrap();
    let request = format!(
        "GET /healthz HTTP/1.1\r\nhost: gateway\r\nx-big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    // The server may stop reading and close before all of it is written.
    let _ = big.write_all(request.as_bytes()).await;
    let answer = read_until_closed(&mut big).await;
    assert!(
        answer
            .as_deref()
            .is_ok_and(|a| a.starts_with("HTTP/1.1 431")),
        "{answer:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn connections_past_the_per_address_cap_are_refused_and_other_addresses_still_get_in() {
    let app = spawn_app_with(|s| s.limits.tcp_connections_per_address = 5).await;
    let addr = app.addr();
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut tcp = connect_from(addr, local(1)).await;
        assert!(get(&mut tcp, "/healthz").await.starts_with("HTTP/1.1 200"));
        held.push(tcp);
    }
    let mut sixth = connect_from(addr, local(1)).await;
    let refused = read_until_closed(&mut sixth).await.unwrap();
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("retry-after"));
    let mut other = connect_from(addr, local(2)).await;
    assert!(get(&mut other, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
    // A connection closed gives its place back.
    drop(held.pop());
    let again = tokio::time::timeout(WAIT, async {
        loop {
            let mut tcp = connect_from(addr, local(1)).await;
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: gateway\r\n\r\n")
                .await
                .unwrap();
            let mut status = [0u8; 12];
            if tcp.read_exact(&mut status).await.is_ok() && &status == b"HTTP/1.1 200" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(again.is_ok(), "the freed place was not given back");
    app.stop().await;
}

#[tokio::test]
async fn past_the_connection_cap_health_checks_and_operators_still_get_in_from_the_reserve() {
    let app = spawn_app_with(|s| {
        s.server.max_connections = 8;
        s.server.reserved_connections = 2;
    })
    .await;
    let addr = app.addr();
    // Six connections (from six addresses) fill everything but the reserve.
    let mut held = Vec::new();
    for n in 1..=6 {
        let mut tcp = connect_from(addr, local(n)).await;
        assert!(get(&mut tcp, "/healthz").await.starts_with("HTTP/1.1 200"));
        held.push(tcp);
    }
    // The seventh is in the reserve: health checks and the operators' pages are served...
    let mut reserve = connect_from(addr, local(7)).await;
    assert!(get(&mut reserve, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
    // (Signed out: refused by the API itself, not by the cap.)
    let me = get(&mut reserve, "/api/me").await;
    assert!(me.starts_with("HTTP/1.1 401"), "{me}");
    // ...the widget is not, and is told to come back.
    let mut widget = connect_from(addr, local(8)).await;
    let busy = get(&mut widget, "/widget/").await;
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    assert!(busy.to_ascii_lowercase().contains("retry-after"), "{busy}");
    drop(widget);
    // With all eight open, the next connection is answered 503 and closed.
    let _eighth = tokio::time::timeout(WAIT, async {
        loop {
            let mut tcp = connect_from(addr, local(9)).await;
            if get(&mut tcp, "/healthz").await.starts_with("HTTP/1.1 200") {
                break tcp;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the eighth place is free once the widget's connection closed");
    let mut ninth = connect_from(addr, local(10)).await;
    let refused = read_until_closed(&mut ninth).await.unwrap();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    drop(held);
    app.stop().await;
}

#[tokio::test]
async fn idle_connections_filling_every_place_give_way_to_a_health_check() {
    let app = spawn_app_with(|s| {
        s.server.max_connections = 8;
        s.server.reserved_connections = 2;
        // Long enough that no idle connection times out during the test.
        s.server.header_read_timeout_ms = 30_000;
    })
    .await;
    let addr = app.addr();
    // Eight connections that send nothing fill every place, the reserve too. They are accepted
    // in the order they connected, before the health check below.
    let mut idle = Vec::new();
    for n in 1..=8 {
        idle.push(connect_from(addr, local(n)).await);
    }
    let mut health = connect_from(addr, local(100)).await;
    let answer = get(&mut health, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The oldest idle connection made way; the newest is still open.
    assert_eq!(read_until_closed(&mut idle[0]).await, Ok(String::new()));
    let mut newest = [0u8; 1];
    let still_open =
        tokio::time::timeout(Duration::from_millis(200), idle[7].read(&mut newest)).await;
    assert!(still_open.is_err(), "the newest idle connection was closed");
    app.stop().await;
}
